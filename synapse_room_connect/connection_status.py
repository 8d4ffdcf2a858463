"""A connection's status, derived from both rooms' current state (any process)."""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from synapse_room_connect.handshake import (
    Mode,
    RoomTraits,
    Side,
    Status,
    Verdict,
    derive,
    mode_for,
)
from synapse_room_connect.rooms import server_of
from synapse_room_connect.store import CachedConnection


class StateReader(Protocol):
    """What status derivation reads of room state (rooms.RoomReader)."""

    async def visible(self, room_id: str) -> bool: ...

    async def side(self, room_id: str, other_room_id: str) -> Side: ...

    async def traits(self, room_id: str) -> RoomTraits | None: ...

    async def connection_events(self, room_id: str) -> dict[str, Any]: ...


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


async def derive_pair(reader: StateReader, a: str, b: str) -> PairStatus:
    """Both directions of the pair ``a``, ``b`` from current state."""
    side_a = await reader.side(a, b)
    side_b = await reader.side(b, a)
    traits_a = await reader.traits(a)
    traits_b = await reader.traits(b)
    verdict_a = derive(side_a, side_b, traits_here=traits_a, traits_there=traits_b)
    verdict_b = derive(side_b, side_a, traits_here=traits_b, traits_there=traits_a)
    return PairStatus(
        a=Direction(a, b, side_a, side_b, verdict_a, via_to(b, side_a, side_b)),
        b=Direction(b, a, side_b, side_a, verdict_b, via_to(a, side_b, side_a)),
        mode=mode_for(traits_a, traits_b),
    )


async def connected_rooms(reader: StateReader, store: CachedStatuses, room_id: str) -> list[str]:
    """Rooms ``room_id`` has (or had) a connection with: its state and the cache."""
    others: set[str] = set()
    if await reader.visible(room_id):
        others.update((await reader.connection_events(room_id)).keys())
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
        )

    async def list_for(self, room_id: str) -> list[ConnectionView]:
        others = await connected_rooms(self._reader, self._store, room_id)
        return [await self.view(room_id, other) for other in others]
