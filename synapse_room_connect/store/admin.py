"""Read-only queries over the module's tables for the homeserver admin's
view: whole-server reads that nothing else needs."""

from __future__ import annotations

from collections.abc import Collection

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect.store.records import PointerTally
from synapse_room_connect.store.schema import StoreBase
from synapse_room_connect.synapse_compat import sql

__all__ = ["AdminQueriesStore", "DirectionRow", "PointerTally", "RoomPair"]


@attrs.frozen(order=True)
class RoomPair:
    """Two connected rooms, in ID order: one entry per connection."""

    room_a: str
    room_b: str


@attrs.frozen
class DirectionRow:
    """One room's cached view of its connection to another."""

    room_id: str
    other_room_id: str
    status: str
    ferry: str | None
    mode: str | None
    updated_ts: int


def _marks(values: Collection[str]) -> str:
    return ", ".join("?" for _ in values)


class AdminQueriesStore(StoreBase):
    async def pairs_after(self, after: RoomPair | None, limit: int) -> list[RoomPair]:
        """Up to ``limit`` connections ordered by their pair, after ``after``."""
        start = after or RoomPair("", "")

        def txn_fn(txn: LoggingTransaction) -> list[RoomPair]:
            # Both directions of a pair are cached; fold them into one.
            txn.execute(
                """
                SELECT a, b FROM (
                    SELECT DISTINCT
                        CASE WHEN room_id < other_room_id THEN room_id ELSE other_room_id END
                            AS a,
                        CASE WHEN room_id < other_room_id THEN other_room_id ELSE room_id END
                            AS b
                    FROM room_connect_connections
                ) AS pairs
                WHERE a > ? OR (a = ? AND b > ?)
                ORDER BY a, b
                LIMIT ?
                """,
                (start.room_a, start.room_a, start.room_b, limit),
            )
            return [RoomPair(str(row[0]), str(row[1])) for row in txn.fetchall()]

        return await self._run("room_connect_admin_pairs", txn_fn)

    async def directions(self, room_ids: Collection[str]) -> list[DirectionRow]:
        """Every cached direction out of ``room_ids``."""

        def txn_fn(txn: LoggingTransaction) -> list[DirectionRow]:
            txn.execute(
                "SELECT room_id, other_room_id, status, ferry, mode, updated_ts"
                f" FROM room_connect_connections WHERE room_id IN ({_marks(room_ids)})",
                tuple(room_ids),
            )
            return [
                DirectionRow(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], int(r[5]))
                for r in txn.fetchall()
            ]

        if not room_ids:
            return []
        return await self._run("room_connect_admin_directions", txn_fn)

    async def pointer_tallies(self, room_ids: Collection[str]) -> list[PointerTally]:
        """Pointers carried into ``room_ids``, per source and target room."""

        if not room_ids:
            return []
        rows = await self._run(
            "room_connect_admin_pointer_tallies", lambda txn: sql.pointer_tallies(txn, room_ids)
        )
        return [PointerTally(*row) for row in rows]
