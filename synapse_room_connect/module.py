"""The entry point Synapse loads: wires config, storage, callbacks and HTTP."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from synapse.api.errors import SynapseError
from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import metrics
from synapse_room_connect.bot import FerryBot
from synapse_room_connect.commands import is_command
from synapse_room_connect.config import RoomConnectConfig, parse_config
from synapse_room_connect.connections import Connections
from synapse_room_connect.constants import CONNECTION_EVENT_TYPE, HTTP_ROOT
from synapse_room_connect.expansion import Expander
from synapse_room_connect.http import RoomConnectResource
from synapse_room_connect.rooms import StateMap
from synapse_room_connect.store import Store

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
        self.expander = Expander(api, self.store)
        # on_new_event fires on every process; only one of them may act.
        self.is_acting_process = config.is_acting_process(api.worker_name)

        api.register_web_resource(HTTP_ROOT, RoomConnectResource(self))
        api.register_add_extra_fields_to_unsigned_client_event_callbacks(
            add_field_to_unsigned_callback=self.expander.unsigned_for
        )
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed,
            on_new_event=self.on_new_event,
        )
        # Invites from other servers arrive as outliers, which on_new_event
        # never sees; this is the one hook that does.
        api.register_spam_checker_callbacks(federated_user_may_invite=self._on_federated_invite)
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
            # Catch up on anything that changed while this process was down.
            await self.connections.reconcile_all()
            # Resume ferrying from each room's cursor: whatever was persisted
            # while this process was down (or mid-crash) goes out now.
            self.connections.ferry.wake()

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap
    ) -> tuple[bool, dict[str, Any] | None]:
        if event.type != CONNECTION_EVENT_TYPE or not event.is_state():
            return True, None
        # Remote events are never refused here: rejecting them would fork our
        # view of the room. They are judged (and ignored) when deriving status.
        if not self.api.is_mine(event.sender):
            return True, None
        try:
            self.connections.check_local_event(event, state_events)
            await self.connections.check_local_event_guard(event, state_events)
        except SynapseError as e:
            # errcode is a str-valued enum member; label with its value.
            errcode = str(getattr(e.errcode, "value", e.errcode))
            metrics.refused_connection_events.labels(self.api.server_name, errcode).inc()
            logger.info(
                "Refused connection event from %s in %s: %s", event.sender, event.room_id, e.msg
            )
            raise
        return True, None

    async def on_new_event(self, event: EventBase, state_events: StateMap) -> None:
        # Runs inline before /sync wakes up: filter cheaply, hand work to the
        # background, never await a send here.
        self.expander.on_new_event(event)
        if not self.is_acting_process:
            return
        ferry = self.connections.ferry
        if event.room_id in ferry.active_rooms:
            ferry.wake()
        etype = event.type
        if etype == "m.room.message":
            if event.sender != self.bot_user_id and is_command(event.content.get("body")):
                bot_member = state_events.get(("m.room.member", self.bot_user_id))
                if bot_member is not None and bot_member.content.get("membership") in (
                    "join",
                    "invite",
                ):
                    self.api.run_as_background_process(
                        "room_connect_command", self.connections.handle_command, event
                    )
            return
        if not event.is_state():
            return
        if etype == CONNECTION_EVENT_TYPE:
            self.connections.room_changed(event.room_id)
            if event.state_key:
                self.connections.room_changed(event.state_key)
        elif etype == "m.room.member" and event.state_key == self.bot_user_id:
            membership = event.content.get("membership")
            if membership == "invite":
                self.api.run_as_background_process(
                    "room_connect_accept_invite", self._accept_invite, event
                )
            elif membership == "join":
                self.connections.room_changed(event.room_id)
        elif etype in _TRAIT_EVENT_TYPES:
            self.connections.room_changed(event.room_id)

    async def _on_federated_invite(self, event: EventBase) -> Literal["NOT_SPAM"]:
        if event.state_key == self.bot_user_id:
            # Give Synapse time to finish storing the invite before joining.
            self.api.delayed_background_call(
                _ACCEPT_INVITE_DELAY_MS,
                self._accept_invite,
                event,
                desc="room_connect_accept_invite",
            )
        return "NOT_SPAM"

    async def _accept_invite(self, event: EventBase) -> None:
        # Accepting is what lets an admin of a room on another server approve
        # with a chat command, or lets this server see that room's consent.
        server = event.sender.partition(":")[2]
        await self.bot.join(event.room_id, [server] if server else [])
