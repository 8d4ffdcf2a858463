"""Where each new event goes: the ferry, reconciliation, commands or invites.

The feed hands every batch of new events here (ferry processes only). The
router filters cheaply and hands real work to background processes, so a slow
send never holds up the feed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, Literal, Protocol

import attrs
from synapse.module_api import EventBase

from synapse_room_connect.commands.queue import FetchEvents
from synapse_room_connect.commands.runner import is_command
from synapse_room_connect.constants import CONNECTION_EVENT_TYPE, TRAIT_EVENT_TYPES
from synapse_room_connect.store import NewEvent

TOMBSTONE_EVENT_TYPE = "m.room.tombstone"

logger = logging.getLogger(__name__)

# Time for Synapse to finish storing a federated invite before the bot joins.
ACCEPT_INVITE_DELAY_MS = 500


class RouterHost(Protocol):
    """What the router needs of the homeserver (a ModuleApi fits)."""

    def run_as_background_process(
        self, desc: str, func: Callable[..., Awaitable[Any]], *args: Any
    ) -> object: ...

    def delayed_background_call(
        self, msec: float, f: Callable[..., object], *args: object, desc: str | None = None
    ) -> object: ...


class RouterBot(Protocol):
    @property
    def user_id(self) -> str: ...

    async def rooms_with_membership(self) -> frozenset[str]: ...

    async def accept_invite(self, room_id: str, inviter: str) -> bool: ...


class FerryTrigger(Protocol):
    @property
    def active_rooms(self) -> frozenset[str]: ...

    def events_in(self, room_ids: Iterable[str]) -> None: ...


class Reconciliation(Protocol):
    def room_changed(self, room_id: str) -> None: ...

    def room_upgraded(self, room_id: str) -> None: ...


class Commands(Protocol):
    async def handle(self, event: EventBase) -> None: ...


@attrs.define
class EventRouter:
    _host: RouterHost
    _bot: RouterBot
    _ferry: FerryTrigger
    _reconciler: Reconciliation
    _commands: Commands
    _fetch_events: FetchEvents
    # False on a ferry process other than the first listed (core/sharding.py):
    # it only ferries; reconciliation, invites and commands happen once, on
    # the coordinator.
    _coordinator: bool = attrs.field(kw_only=True, default=True)
    # The ferry's ghosts: their events are the ferry's own, never a command
    # nor anything to carry (core/ghosts.py).
    _is_ghost: Callable[[str], bool] = attrs.field(kw_only=True, default=lambda _user_id: False)
    # A person's member event changed in a connected room: their ghost's
    # name and avatar follow (bot/ghosts.py).
    _person_changed: Callable[[str, str], Awaitable[None]] | None = attrs.field(
        kw_only=True, default=None
    )
    # Rooms the bot is joined or invited to, as last read: where commands
    # come from. Any change to it is a change of state, which the feed
    # always reads, and on_new_events refreshes it then.
    _bot_rooms: frozenset[str] = attrs.field(init=False, factory=frozenset)

    async def start(self) -> None:
        self._bot_rooms = await self._bot.rooms_with_membership()

    def watches_any(self, room_ids: Collection[str]) -> bool:
        """Whether any of ``room_ids`` is one where every new event matters,
        not only changes of state: a connected room or one the bot is in.
        The feed asks on every notification; there may be thousands of them."""
        active, bot_rooms = self._ferry.active_rooms, self._bot_rooms
        return any(room_id in active or room_id in bot_rooms for room_id in room_ids)

    async def on_new_events(self, events: Sequence[NewEvent]) -> None:
        # Runs in the feed's loop: filter cheaply, hand work to the
        # background, never await a send here.
        bot, is_ghost = self._bot.user_id, self._is_ghost
        self._ferry.events_in(
            {e.room_id for e in events if e.sender != bot and not is_ghost(e.sender)}
        )
        if not self._coordinator:
            return
        messages = []
        for event in events:
            etype = event.type
            if etype == "m.room.message":
                if event.sender != bot and not is_ghost(event.sender):
                    messages.append(event)
            elif event.state_key is None:
                continue
            elif etype == CONNECTION_EVENT_TYPE:
                self._reconciler.room_changed(event.room_id)
                if event.state_key:
                    self._reconciler.room_changed(event.state_key)
            elif etype == "m.room.member" and event.state_key == bot:
                if event.membership == "invite":
                    self._host.run_as_background_process(
                        "room_connect_accept_invite",
                        self._bot.accept_invite,
                        event.room_id,
                        event.sender,
                    )
                elif event.membership == "join":
                    self._reconciler.room_changed(event.room_id)
            elif (
                etype == "m.room.member"
                and self._person_changed is not None
                and event.membership == "join"
                and event.room_id in self._ferry.active_rooms
                and not is_ghost(event.state_key)
            ):
                self._host.run_as_background_process(
                    "room_connect_ghost_profile",
                    self._person_changed,
                    event.room_id,
                    event.state_key,
                )
            elif etype in TRAIT_EVENT_TYPES:
                self._reconciler.room_changed(event.room_id)
            elif etype == TOMBSTONE_EVENT_TYPE and event.state_key == "":
                self._reconciler.room_upgraded(event.room_id)
        if any(e.type == "m.room.member" and e.state_key == bot for e in events):
            self._bot_rooms = await self._bot.rooms_with_membership()
        if messages:
            await self._commands_in(messages)

    async def _commands_in(self, messages: Sequence[NewEvent]) -> None:
        """Hand ``!connect`` commands in rooms the bot is in to the background."""
        candidates = [m.event_id for m in messages if m.room_id in self._bot_rooms]
        if not candidates:
            return
        for event in (await self._fetch_events(candidates)).values():
            if is_command(event.content.get("body")):
                self._host.run_as_background_process(
                    "room_connect_command", self._commands.handle, event
                )

    async def on_federated_invite(self, event: EventBase) -> Literal["NOT_SPAM"]:
        """Invites from other servers arrive as outliers, which the feed never sees."""
        if event.state_key == self._bot.user_id:
            self._host.delayed_background_call(
                ACCEPT_INVITE_DELAY_MS,
                self._bot.accept_invite,
                event.room_id,
                event.sender,
                desc="room_connect_accept_invite",
            )
        return "NOT_SPAM"
