"""The entry point Synapse loads: wires config, storage, callbacks and HTTP."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from synapse.api.errors import SynapseError
from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import metrics, synapse_compat
from synapse_room_connect.bot import FerryBot
from synapse_room_connect.commands import is_command
from synapse_room_connect.config import RoomConnectConfig, parse_config
from synapse_room_connect.connections import Connections
from synapse_room_connect.constants import CONNECTION_EVENT_TYPE, HTTP_ROOT
from synapse_room_connect.expansion import Expander
from synapse_room_connect.feed import Feed
from synapse_room_connect.http import RoomConnectResource
from synapse_room_connect.http_admin import build_admin_routes
from synapse_room_connect.rooms import server_of
from synapse_room_connect.store import NewEvent, Store

logger = logging.getLogger(__name__)

_ACCEPT_INVITE_DELAY_MS = 500

# State whose change can flip a connection's guard or mode.
_TRAIT_EVENT_TYPES = frozenset(
    {"m.room.encryption", "m.room.join_rules", "m.room.history_visibility"}
)


class RoomConnectModule:
    def __init__(self, config: RoomConnectConfig, api: ModuleApi) -> None:
        self.config = config
        self.api = api
        self.store = Store(api)
        self.bot = FerryBot(api, config.bot_localpart, config.bot_displayname)
        self.bot_user_id = self.bot.user_id
        self.connections = Connections(api, config, self.store, self.bot)
        self.admin_routes = build_admin_routes(
            api, self.store, self.bot, self.connections, config.approve_power_level
        )
        self.expander = Expander(api, self.store, config.ferry_state_events)
        # The module is loaded on every process; only one of them may act.
        self.is_acting_process = config.is_acting_process(api.worker_name)

        api.register_web_resource(HTTP_ROOT, RoomConnectResource(self))
        api.register_add_extra_fields_to_unsigned_client_event_callbacks(
            add_field_to_unsigned_callback=self.expander.unsigned_for
        )
        # Validation of connection events: this hook gets the event alone,
        # where check_event_allowed would make Synapse load the room's whole
        # state for every event on the server. Invites from other servers
        # arrive as outliers, which the feed never sees; the second hook does.
        api.register_spam_checker_callbacks(
            check_event_for_spam=self.check_event_for_spam,
            federated_user_may_invite=self._on_federated_invite,
        )
        # The feed stands in for on_new_event; see feed.py for why.
        # Rooms the bot is joined or invited to, as last read: where commands
        # come from. Any change to it is a change of state, which the feed
        # always reads, and the consumer refreshes it then.
        self._bot_rooms: frozenset[str] = frozenset()
        self.feed = Feed(
            api,
            self.store,
            self._on_new_events,
            watched=lambda: self.connections.ferry.active_rooms | self._bot_rooms,
        )
        # Migrate as soon as the reactor runs, so a broken database shows up in
        # the log at start-up rather than on the first connection.
        api.delayed_background_call(0, self._start, desc="room_connect_start")
        logger.info(
            "synapse_room_connect loaded: bot %s, acting process %s (this is %s)",
            self.bot_user_id,
            config.worker or "main",
            api.worker_name or "main",
        )

    @staticmethod
    def parse_config(config: Mapping[str, Any] | None) -> RoomConnectConfig:
        return parse_config(config)

    async def _start(self) -> None:
        await self.store.migrate()
        if self.is_acting_process:
            self._bot_rooms = await self.bot.rooms_with_membership()
            self.feed.start()
            # Catch up on anything that changed while this process was down.
            await self.connections.reconcile_all()
            # Resume ferrying from each room's cursor: whatever was persisted
            # while this process was down (or mid-crash) goes out now.
            self.connections.ferry.wake()

    async def check_event_for_spam(self, event: EventBase) -> Literal["NOT_SPAM"]:
        """Refuse a bad connection event a local user sends, with a clear error.

        Synapse calls this before persisting a local user's event; raising
        (rather than returning an error code) keeps the status and message of
        the SynapseError. Remote events are never refused here: rejecting
        them would fork our view of the room. They are judged (and ignored)
        when deriving status.
        """
        if event.type != CONNECTION_EVENT_TYPE or not event.is_state():
            return "NOT_SPAM"
        if not self.api.is_mine(event.sender):
            return "NOT_SPAM"
        # The state the event is about to be added to; connection events are
        # rare, so reading it whole here costs nothing that matters.
        state = await self.api.get_room_state(event.room_id)
        try:
            self.connections.check_local_event(event, state)
            await self.connections.check_local_event_guard(event, state)
        except SynapseError as e:
            # errcode is a str-valued enum member; label with its value.
            errcode = str(getattr(e.errcode, "value", e.errcode))
            metrics.refused_connection_events.labels(self.api.server_name, errcode).inc()
            logger.info(
                "Refused connection event from %s in %s: %s", event.sender, event.room_id, e.msg
            )
            raise
        return "NOT_SPAM"

    async def _on_new_events(self, events: Sequence[NewEvent]) -> None:
        # Runs in the feed's loop: filter cheaply, hand work to the
        # background, never await a send here.
        bot = self.bot_user_id
        self.connections.ferry.events_in({e.room_id for e in events if e.sender != bot})
        messages = []
        for event in events:
            etype = event.type
            if etype == "m.room.message":
                if event.sender != bot:
                    messages.append(event)
            elif event.state_key is None:
                continue
            elif etype == CONNECTION_EVENT_TYPE:
                self.connections.room_changed(event.room_id)
                if event.state_key:
                    self.connections.room_changed(event.state_key)
            elif etype == "m.room.member" and event.state_key == bot:
                if event.membership == "invite":
                    self.api.run_as_background_process(
                        "room_connect_accept_invite",
                        self._accept_invite,
                        event.room_id,
                        event.sender,
                    )
                elif event.membership == "join":
                    self.connections.room_changed(event.room_id)
            elif etype in _TRAIT_EVENT_TYPES:
                self.connections.room_changed(event.room_id)
        if any(e.type == "m.room.member" and e.state_key == bot for e in events):
            self._bot_rooms = await self.bot.rooms_with_membership()
        if messages:
            await self._commands_in(messages)

    async def _commands_in(self, messages: Sequence[NewEvent]) -> None:
        """Hand ``!connect`` commands in rooms the bot is in to the background."""
        candidates = [m.event_id for m in messages if m.room_id in self._bot_rooms]
        if not candidates:
            return
        for event in (await synapse_compat.get_events(self.api, candidates)).values():
            if is_command(event.content.get("body")):
                self.api.run_as_background_process(
                    "room_connect_command", self.connections.handle_command, event
                )

    async def _on_federated_invite(self, event: EventBase) -> Literal["NOT_SPAM"]:
        if event.state_key == self.bot_user_id:
            # Give Synapse time to finish storing the invite before joining.
            self.api.delayed_background_call(
                _ACCEPT_INVITE_DELAY_MS,
                self._accept_invite,
                event.room_id,
                event.sender,
                desc="room_connect_accept_invite",
            )
        return "NOT_SPAM"

    async def _accept_invite(self, room_id: str, inviter: str) -> None:
        # Accepting is what lets an admin of a room on another server approve
        # with a chat command, or lets this server see that room's consent.
        server = server_of(inviter)
        await self.bot.join(room_id, [server] if server else [])
