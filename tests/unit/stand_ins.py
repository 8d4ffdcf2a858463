"""Small in-memory stand-ins for the store, the room reader, the bot and the
homeserver, for unit tests of the logic that drives them.

The store, the room reader and the bot are the module's own; where a
stand-in imitates Synapse (``MemoryAccountData``, ``Host``), its docstring
names the module API calls it imitates, checked against Synapse 1.163.2."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from synapse_room_connect.connections.reconcile import Reconciler
from synapse_room_connect.core.handshake import Consent, Mode, RoomTraits, Side, Status
from synapse_room_connect.core.upgrades import Link
from synapse_room_connect.store import CachedConnection, Previous


@attrs.define
class Row:
    status: Status
    ferry: str | None
    via: tuple[str, ...]
    mode: Mode
    since: int | None = None


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}

    async def swap_connection(self, room_id: str, other_room_id: str, *row: Any) -> Previous:
        status, ferry, via, mode, _now, *_senders = row
        old = self.rows.get((room_id, other_room_id))
        since = old.since if old is not None else None
        self.rows[(room_id, other_room_id)] = Row(status, ferry, via, mode, since)
        if old is None:
            return Previous()
        return Previous(old.status, old.ferry, old.mode)

    async def set_active_since(self, room_id: str, other_room_id: str, stream: int) -> None:
        self.rows[(room_id, other_room_id)].since = stream

    async def cached_connection(self, room_id: str, other_room_id: str) -> CachedConnection | None:
        row = self.rows.get((room_id, other_room_id))
        if row is None:
            return None
        return CachedConnection(room_id, other_room_id, row.status, row.ferry, row.via)

    async def cached_connections(self, room_id: str | None = None) -> list[CachedConnection]:
        return [
            CachedConnection(here, other, row.status, row.ferry, row.via)
            for (here, other), row in sorted(self.rows.items())
            if room_id is None or here == room_id
        ]


class MemoryRooms:
    """Room state as the reader would find it: consents, withdrawals, traits."""

    def __init__(self) -> None:
        self.consents: dict[tuple[str, str], Consent] = {}
        self.withdrawn: set[tuple[str, str]] = set()
        self.traits_of: dict[str, RoomTraits] = {}
        self.invisible: set[str] = set()
        self.links: dict[str, Link] = {}

    def upgrade(self, old: str, new: str, sender: str = "@admin:hs") -> None:
        """``old`` tombstoned for ``new``, which names ``old`` as its predecessor."""
        self.links[old] = attrs.evolve(
            self.links.get(old, Link(old)), replacement=new, tombstone_sender=sender
        )
        self.links[new] = attrs.evolve(self.links.get(new, Link(new)), predecessor=old)

    async def link(self, room_id: str) -> Link:
        return self.links.get(room_id, Link(room_id))

    def consent(self, room_id: str, other: str, sender: str, ferry: str) -> None:
        self.withdrawn.discard((room_id, other))
        self.consents[(room_id, other)] = Consent(
            room_id=room_id,
            other_room_id=other,
            via=("hs",),
            ferry=ferry,
            acknowledge=frozenset(),
            sender=sender,
            event_id=f"$consent-{room_id}-{other}",
        )

    def withdraw(self, room_id: str, other: str) -> None:
        self.consents.pop((room_id, other), None)
        self.withdrawn.add((room_id, other))

    async def visible(self, room_id: str) -> bool:
        return room_id not in self.invisible

    async def connection_events(self, room_id: str) -> dict[str, Any]:
        keys = [other for here, other in [*self.consents, *self.withdrawn] if here == room_id]
        return {other: object() for other in keys}

    async def traits(self, room_id: str) -> RoomTraits | None:
        if room_id in self.invisible:
            return None
        return self.traits_of.get(room_id, RoomTraits(encrypted=False, public=False))

    async def side(self, room_id: str, other_room_id: str) -> Side:
        if room_id in self.invisible:
            return Side(room_id, visible=False)
        key = (room_id, other_room_id)
        return Side(room_id, consent=self.consents.get(key), withdrawn=key in self.withdrawn)


class RecordingBot:
    def __init__(self, user_id: str = "@bot:hs") -> None:
        self.user_id = user_id
        self.joined: set[str] = set()
        self.refused: set[str] = set()
        self.joins: list[str] = []
        self.leaves: list[str] = []
        self.notices: list[tuple[str, str]] = []
        self.accepted: list[tuple[str, str]] = []
        self.rooms: frozenset[str] = frozenset()

    async def joined_rooms(self) -> frozenset[str]:
        return frozenset(self.joined)

    async def rooms_with_membership(self) -> frozenset[str]:
        return self.rooms

    async def membership(self, room_id: str) -> str | None:
        return "join" if room_id in self.joined else None

    async def join(self, room_id: str, via: list[str], inviter: str | None = None) -> bool:
        if room_id in self.refused:
            return False
        if room_id not in self.joined:
            self.joins.append(room_id)
            self.joined.add(room_id)
        return True

    async def accept_invite(self, room_id: str, inviter: str) -> bool:
        self.accepted.append((room_id, inviter))
        return True

    async def leave(self, room_id: str) -> None:
        self.leaves.append(room_id)
        self.joined.discard(room_id)

    async def notice(self, room_id: str, text: str, reply_to: str | None = None) -> None:
        self.notices.append((room_id, text))

    def notices_in(self, room_id: str) -> list[str]:
        return [text for room, text in self.notices if room == room_id]


class MemoryAccountData:
    """Global account data (ModuleApi.account_data_manager's get_global and
    put_global), kept across the restarts a test plays by building its
    objects again. Read back frozen, as ``AccountDataManager.get_global``
    returns it (synapse/module_api/__init__.py, Synapse 1.163.2)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, Any]] = {}

    async def get_global(self, user_id: str, data_type: str) -> dict[str, Any] | None:
        return self.data.get((user_id, data_type))

    async def put_global(self, user_id: str, data_type: str, new_data: dict[str, Any]) -> None:
        # Read back frozen, as Synapse does: lists become tuples.
        self.data[(user_id, data_type)] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in new_data.items()
        }


class Host:
    """The homeserver's scheduling, as ModuleApi's get_current_time_msec,
    sleep, run_as_background_process and delayed_background_call are called
    (signatures checked against Synapse 1.163.2); unlike Synapse, background
    work is kept until the test runs it (or something sleeps), and delayed
    calls are only listed."""

    server_name = "hs"

    def __init__(self) -> None:
        self.background: list[tuple[str, Callable[..., Awaitable[Any]], tuple[Any, ...]]] = []
        self.delayed: list[tuple[float, Callable[..., object], tuple[object, ...], str | None]] = []
        self.slept = 0.0

    def get_current_time_msec(self) -> int:
        return 1000

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep does
        await self.run_background()

    def run_as_background_process(
        self, desc: str, func: Callable[..., Awaitable[Any]], *args: Any
    ) -> object:
        self.background.append((desc, func, args))
        return None

    def delayed_background_call(
        self, msec: float, f: Callable[..., object], *args: object, desc: str | None = None
    ) -> object:
        self.delayed.append((msec, f, args, desc))
        return None

    async def run_background(self) -> None:
        while self.background:
            _, func, args = self.background.pop(0)
            await func(*args)


class ReconcilerWorld:
    """The stand-ins a Reconciler drives; tests add what they watch."""

    def __init__(self) -> None:
        self.host = Host()
        self.store = MemoryStore()
        self.rooms = MemoryRooms()
        self.bot = RecordingBot()

    def make_reconciler(
        self, label: Callable[[str], Awaitable[str]], position: int, **options: Any
    ) -> Reconciler:
        """A Reconciler over them (approve_power_level 100) whose activated
        connections ferry from ``position``."""

        async def activation_position(side_a: Side, side_b: Side) -> int:
            return position

        return Reconciler(
            self.host,
            self.store,
            self.rooms,
            self.bot,
            label=label,
            activation_position=options.pop("activation_position", activation_position),
            approve_power_level=100,
            **options,
        )


def run_async(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test to completion on a fresh event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run
