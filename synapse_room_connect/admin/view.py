"""Every connection this server knows, for the homeserver admin, a page at a time.

The cache table says which pairs exist and their status; room state says who
consented and when, and which rooms an upgrade replaced; the pointer table
says how much crossed.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import attrs
from synapse.module_api import ModuleApi, RoomID
from synapse.module_api.errors import Codes, SynapseError

from synapse_room_connect import synapse_compat
from synapse_room_connect.connections.rooms import RoomReader
from synapse_room_connect.connections.status import side_toward, upgraded_to
from synapse_room_connect.core.upgrades import predecessors
from synapse_room_connect.store.admin import AdminQueriesStore, DirectionRow, PointerTally, RoomPair

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@attrs.frozen
class Page:
    connections: tuple[dict[str, Any], ...]
    next_batch: str | None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"connections": list(self.connections)}
        if self.next_batch is not None:
            body["next_batch"] = self.next_batch
        return body


def encode_token(pair: RoomPair) -> str:
    raw = json.dumps([pair.room_a, pair.room_b], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(token: str) -> RoomPair:
    try:
        room_a, room_b = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if not isinstance(room_a, str) or not isinstance(room_b, str):
            raise ValueError("not two room IDs")
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise SynapseError(
            400, "'from' is not a token this endpoint returned", Codes.INVALID_PARAM
        ) from None
    return RoomPair(room_a, room_b)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise SynapseError(
            400, f"'limit' must be an integer from 1 to {MAX_LIMIT}", Codes.INVALID_PARAM
        )
    return limit


class ConnectionDirectory:
    def __init__(self, api: ModuleApi, queries: AdminQueriesStore, threshold: int) -> None:
        self._api = api
        self._queries = queries
        self._reader = RoomReader(api, threshold)

    async def page(self, from_token: str | None, limit: int) -> Page:
        after = decode_token(from_token) if from_token is not None else None
        pairs = await self._queries.pairs_after(after, limit + 1)
        more = len(pairs) > limit
        pairs = pairs[:limit]
        rooms = {room for p in pairs for room in (p.room_a, p.room_b)}
        directions = {
            (d.room_id, d.other_room_id): d for d in await self._queries.directions(rooms)
        }
        tallies = {
            (t.source_room_id, t.target_room_id): t
            for t in await self._queries.pointer_tallies(rooms)
        }
        entries = [await self._entry(p, directions, tallies) for p in pairs]
        return Page(tuple(entries), encode_token(pairs[-1]) if more else None)

    async def _entry(
        self,
        pair: RoomPair,
        directions: dict[tuple[str, str], DirectionRow],
        tallies: dict[tuple[str, str], PointerTally],
    ) -> dict[str, Any]:
        a, b = pair.room_a, pair.room_b
        # Both directions are written together; either one says the mode and ferry.
        known = directions.get((a, b)) or directions.get((b, a))
        carried = [t for t in (tallies.get((a, b)), tallies.get((b, a))) if t is not None]
        times = [t.last_ts for t in carried if t.last_ts is not None]
        return {
            "rooms": [
                await self._room(a, b, directions.get((a, b)), tallies.get((b, a))),
                await self._room(b, a, directions.get((b, a)), tallies.get((a, b))),
            ],
            "status": known.status if known is not None else None,
            "mode": known.mode if known is not None else None,
            "ferry": known.ferry if known is not None else None,
            "updated_ts": max(
                (d.updated_ts for d in (directions.get((a, b)), directions.get((b, a))) if d),
                default=None,
            ),
            "pointers": sum(t.count for t in carried),
            "last_pointer_ts": max(times, default=None),
        }

    async def _room(
        self,
        room_id: str,
        other_room_id: str,
        direction: DirectionRow | None,
        into: PointerTally | None,
    ) -> dict[str, Any]:
        """One side: its names, its status as it sees it, who consented, what it
        received, and its place in an upgrade chain."""
        alias: str | None = None
        name: str | None = None
        consent: dict[str, Any] | None = None
        previous: list[str] = []
        successor: str | None = None
        visible = await self._reader.visible(room_id)
        if visible:
            found = await self._api.get_canonical_room_alias(RoomID.from_string(room_id))
            alias = found.to_string() if found is not None else None
            state = await self._api.get_room_state(room_id, [("m.room.name", "")])
            name_event = state.get(("m.room.name", ""))
            name = name_event.content.get("name") if name_event is not None else None
            # As status derivation reads it: a consent given to one of the
            # other room's predecessors counts for it (an upgrade moved it).
            side = await side_toward(self._reader, room_id, other_room_id)
            if side.consent is not None:
                given_to = side.consent.other_room_id
                event = await synapse_compat.get_event(self._api, side.consent.event_id)
                consent = {
                    "sender": side.consent.sender,
                    "event_id": side.consent.event_id,
                    "ts": event.origin_server_ts if event is not None else None,
                    "inherited_from": given_to if given_to != other_room_id else None,
                }
            # The IDs this room went by: what older consents, and people, name.
            previous = await predecessors(room_id, self._reader.link)
            successor = await upgraded_to(self._reader, room_id)
        return {
            "room_id": room_id,
            "alias": alias,
            "name": name,
            "status": direction.status if direction is not None else None,
            # False when this server is not in the room: its consent is unknown here.
            "visible": visible,
            "consent": consent,
            "pointers_received": into.count if into is not None else 0,
            "predecessors": previous,
            "upgraded_to": successor,
        }
