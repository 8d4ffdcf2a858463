"""A connection as one room sees it, from state and, when blind, the cache."""

from __future__ import annotations

from synapse_room_connect.connections.status import ConnectionStatus, derive_pair
from synapse_room_connect.core.handshake import Mode, RoomTraits, Status
from tests.unit.stand_ins import MemoryRooms, MemoryStore, run_async

A, B = "!a:hs", "!b:other"
BOT = "@bot:hs"


@run_async
async def test_both_directions_from_one_read() -> None:
    rooms = MemoryRooms()
    rooms.consent(A, B, "@alice:hs", BOT)
    pair = await derive_pair(rooms, A, B)
    assert (pair.a.verdict.status, pair.b.verdict.status) == (Status.REQUESTED, Status.INCOMING)
    # A names its own via; B, without consent, is reached through the
    # requester's server and the other room's.
    assert pair.a.via == ("hs",)
    assert pair.b.via == ("hs",)
    assert pair.ferries() == {BOT}
    assert pair.mode is Mode.FERRY


@run_async
async def test_view_reports_mode_and_blockers() -> None:
    rooms = MemoryRooms()
    rooms.consent(A, B, "@alice:hs", BOT)
    rooms.consent(B, A, "@bob:other", BOT)
    rooms.traits_of[A] = RoomTraits(encrypted=True, public=False)
    view = await ConnectionStatus(rooms, MemoryStore()).view(A, B)
    assert view.status is Status.REQUESTED
    assert view.blocked_by == ("encryption_mismatch",)
    assert view.to_json() == {
        "room_id": B,
        "status": "requested",
        "ferry": BOT,
        "via": ["hs"],
        "mode": "client_fanout",
        "blocked_by": ["encryption_mismatch"],
    }


@run_async
async def test_blind_to_the_other_room_the_cache_decides() -> None:
    rooms = MemoryRooms()
    rooms.consent(A, B, "@alice:hs", BOT)
    rooms.invisible.add(B)
    store = MemoryStore()
    await store.swap_connection(A, B, Status.ACTIVE, BOT, ("other",), Mode.FERRY, 0)
    status = ConnectionStatus(rooms, store)
    assert (await status.view(A, B)).status is Status.ACTIVE
    assert [v.other_room_id for v in await status.list_for(A)] == [B]
