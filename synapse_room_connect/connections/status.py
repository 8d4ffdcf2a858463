"""A connection's status, derived from both rooms' current state (any process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
from synapse.module_api import ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.core.handshake import (
    Mode,
    RoomTraits,
    Side,
    Status,
    Verdict,
    derive,
    mode_for,
)
from synapse_room_connect.core.matrix import server_of
from synapse_room_connect.core.upgrades import Link, latest, predecessors
from synapse_room_connect.store import CachedConnection


class StateReader(Protocol):
    """What status derivation reads of room state (rooms.RoomReader)."""

    async def visible(self, room_id: str) -> bool: ...

    async def side(self, room_id: str, other_room_id: str) -> Side: ...

    async def traits(self, room_id: str) -> RoomTraits | None: ...

    async def connection_events(self, room_id: str) -> dict[str, Any]: ...

    async def link(self, room_id: str) -> Link: ...


class CachedStatuses(Protocol):
    """The acting process's last derivations (store.Store)."""

    async def cached_connection(
        self, room_id: str, other_room_id: str
    ) -> CachedConnection | None: ...

    async def cached_connections(self, room_id: str | None = None) -> list[CachedConnection]: ...


@attrs.frozen
class ConnectionView:
    """A connection as one room sees it, for REST answers and notices."""

    room_id: str
    other_room_id: str
    status: Status
    ferry: str | None
    via: tuple[str, ...]
    mode: Mode
    blocked_by: tuple[str, ...] = ()
    # The other room's newest successor, when the other room was upgraded.
    upgraded_to: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "room_id": self.other_room_id,
            "status": self.status.value,
            "ferry": self.ferry,
            "via": list(self.via),
            "mode": self.mode.value,
        }
        if self.blocked_by:
            body["blocked_by"] = list(self.blocked_by)
        if self.upgraded_to is not None:
            body["upgraded_to"] = self.upgraded_to
        return body


@attrs.frozen
class Direction:
    """One room's half of a pair: what its state and the other's make of it."""

    room_id: str
    other_room_id: str
    here: Side
    there: Side
    verdict: Verdict
    # Servers that can reach the other room, best guess first.
    via: tuple[str, ...]
    # Each room's newest successor, when it was upgraded (it then has no
    # live connection: its own successor carries them on).
    here_upgraded_to: str | None = None
    there_upgraded_to: str | None = None


@attrs.frozen
class PairStatus:
    a: Direction
    b: Direction
    mode: Mode

    def ferries(self) -> set[str | None]:
        """Every ferry either side names or the verdicts chose."""
        found: set[str | None] = {self.a.verdict.ferry, self.b.verdict.ferry}
        for side in (self.a.here, self.b.here):
            if side.consent is not None:
                found.add(side.consent.ferry)
        return found


def via_to(other_room_id: str, here: Side, there: Side) -> tuple[str, ...]:
    """Servers that can reach ``other_room_id``, best guess first."""
    if here.consent is not None:
        return here.consent.via
    servers: list[str] = []
    if there.consent is not None:
        servers.append(server_of(there.consent.sender) or "")
    servers.append(server_of(other_room_id) or "")
    return tuple(dict.fromkeys(s for s in servers if s))


async def upgraded_to(reader: StateReader, room_id: str) -> str | None:
    """The room's newest successor, or None if it was not upgraded."""
    newest = await latest(room_id, reader.link)
    if newest != room_id:
        return newest
    # Not confirmed (we cannot see the new room yet): what the tombstone says,
    # which is only ever shown, never followed.
    return (await reader.link(room_id)).replacement


async def side_toward(reader: StateReader, room_id: str, other_room_id: str) -> Side:
    """What ``room_id``'s state says about ``other_room_id``, upgrades included.

    A tombstoned room consents to nothing: its successor carries its
    connections on. A room without an event for ``other_room_id`` consents to
    it if it consented to one of its confirmed predecessors: its admins agreed
    to that conversation, and the other room's admins moved it by upgrading.
    """
    if (await reader.link(room_id)).tombstoned:
        return Side(room_id, withdrawn=True)
    side = await reader.side(room_id, other_room_id)
    if side.consent is not None or side.withdrawn or not side.visible:
        return side
    for predecessor in await predecessors(other_room_id, reader.link):
        earlier = await reader.side(room_id, predecessor)
        if earlier.consent is not None or earlier.withdrawn:
            return earlier
    return side


async def derive_pair(reader: StateReader, a: str, b: str) -> PairStatus:
    """Both directions of the pair ``a``, ``b`` from current state."""
    side_a = await side_toward(reader, a, b)
    side_b = await side_toward(reader, b, a)
    traits_a = await reader.traits(a)
    traits_b = await reader.traits(b)
    verdict_a = derive(side_a, side_b, traits_here=traits_a, traits_there=traits_b)
    verdict_b = derive(side_b, side_a, traits_here=traits_b, traits_there=traits_a)
    next_a = await upgraded_to(reader, a) if side_a.withdrawn else None
    next_b = await upgraded_to(reader, b) if side_b.withdrawn else None
    return PairStatus(
        a=Direction(a, b, side_a, side_b, verdict_a, via_to(b, side_a, side_b), next_a, next_b),
        b=Direction(b, a, side_b, side_a, verdict_b, via_to(a, side_b, side_a), next_b, next_a),
        mode=mode_for(traits_a, traits_b),
    )


async def connected_rooms(reader: StateReader, store: CachedStatuses, room_id: str) -> list[str]:
    """Rooms ``room_id`` has (or had) a connection with: its state and the cache."""
    others: set[str] = set()
    if await reader.visible(room_id):
        for other in await reader.connection_events(room_id):
            # A consent for a room counts for its successors: list the newest.
            others.update({other, await latest(other, reader.link)})
    others.update(row.other_room_id for row in await store.cached_connections(room_id))
    others.discard(room_id)
    return sorted(others)


@attrs.define
class ConnectionStatus:
    """Answers "what is this room's connection to that one" from state."""

    _reader: StateReader
    _store: CachedStatuses

    async def view(self, room_id: str, other_room_id: str) -> ConnectionView:
        pair = await derive_pair(self._reader, room_id, other_room_id)
        here = pair.a
        status = here.verdict.status
        if not here.there.visible:
            # This server left (or never joined) the other room; the acting
            # process's last derivation, made while it could see, is better
            # than assuming the other side still consents.
            cached = await self._store.cached_connection(room_id, other_room_id)
            if cached is not None:
                status = cached.status
        return ConnectionView(
            room_id=room_id,
            other_room_id=other_room_id,
            status=status,
            ferry=here.verdict.ferry,
            via=here.via,
            mode=pair.mode,
            blocked_by=here.verdict.blocked_by,
            upgraded_to=here.there_upgraded_to,
        )

    async def list_for(self, room_id: str) -> list[ConnectionView]:
        others = await connected_rooms(self._reader, self._store, room_id)
        return [await self.view(room_id, other) for other in others]


# Stream position from which an activated connection ferries.
ActivationPosition = Callable[[Side, Side], Awaitable[int]]


async def activation_position(api: ModuleApi, side_a: Side, side_b: Side) -> int:
    """Stream position of the later consent: what came before it stays put.

    Falls back to the current position if a consent event is not stored
    locally, which errs on the side of ferrying less.
    """
    consent_ids = [s.consent.event_id for s in (side_a, side_b) if s.consent is not None]
    events = await synapse_compat.get_events(api, consent_ids)
    known = [synapse_compat.stream_ordering_of(e) for e in events.values()]
    positions = [p for p in known if p is not None]
    if len(positions) == len(consent_ids) == 2:
        return max(positions)
    return synapse_compat.current_stream_position(api)
