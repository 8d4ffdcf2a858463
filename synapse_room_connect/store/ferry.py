"""The ferry's records: how far it has read each direction (cursors) and
which pointer stands for which original in which room."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect import metrics
from synapse_room_connect.core.handshake import Status
from synapse_room_connect.store.schema import StoreBase

# Rooms per query: well under SQLite's 999 bound parameters.
_ROOMS_PER_QUERY: Final = 500


@attrs.frozen
class FerriedPointer:
    """An original and the pointer that carries it into one target room."""

    source_event_id: str
    pointer_event_id: str


@attrs.frozen
class FerryRecord:
    """What one direction's batch wrote: its pointers (maybe none) and how
    far its cursor moves."""

    room_id: str
    target: str
    pointers: tuple[FerriedPointer, ...]
    stream: int


@attrs.frozen
class SourceEvent:
    """The original a pointer the bot sent stands for."""

    room_id: str
    event_id: str


def _set_cursor_txn(
    txn: LoggingTransaction, room_id: str, target_room_id: str, stream: int
) -> None:
    # Only forward: a late writer can never move a cursor back over events
    # already ferried.
    txn.execute(
        """
        INSERT INTO room_connect_cursors (room_id, target_room_id, stream_ordering)
        VALUES (?, ?, ?)
        ON CONFLICT (room_id, target_room_id) DO UPDATE
        SET stream_ordering = EXCLUDED.stream_ordering
        WHERE room_connect_cursors.stream_ordering < EXCLUDED.stream_ordering
        """,
        (room_id, target_room_id, stream),
    )


class FerryRecordsStore(StoreBase):
    async def cursors(self, room_ids: Collection[str]) -> dict[tuple[str, str], int]:
        """(source, target) -> cursor of every direction out of ``room_ids``,
        in one read: the ferry asks once for the directions it starts."""
        rooms = sorted(set(room_ids))

        def txn_fn(txn: LoggingTransaction) -> dict[tuple[str, str], int]:
            found: dict[tuple[str, str], int] = {}
            for n in range(0, len(rooms), _ROOMS_PER_QUERY):
                chunk = rooms[n : n + _ROOMS_PER_QUERY]
                txn.execute(
                    "SELECT room_id, target_room_id, stream_ordering FROM room_connect_cursors"
                    f" WHERE room_id IN ({', '.join('?' for _ in chunk)})",
                    chunk,
                )
                found.update(((str(r[0]), str(r[1])), int(r[2])) for r in txn.fetchall())
            return found

        if not rooms:
            return {}
        found = await self._run("room_connect_cursors", txn_fn)
        metrics.ferry_rows_read.labels(self._api.server_name, "room_connect_cursors").inc(
            len(found)
        )
        return found

    async def record_ferried(self, records: Sequence[FerryRecord]) -> None:
        """Record the pointers that carry each source room's events into its
        target and move the cursors, for any number of directions in one
        transaction: a crash leaves either all or none, and a resend after
        "none" is answered from Synapse's transaction IDs."""

        def txn_fn(txn: LoggingTransaction) -> None:
            txn.execute_batch(
                """
                INSERT INTO room_connect_pointers
                    (source_room_id, source_event_id, target_room_id, pointer_event_id)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (source_event_id, target_room_id) DO NOTHING
                """,
                [
                    (r.room_id, p.source_event_id, r.target, p.pointer_event_id)
                    for r in records
                    for p in r.pointers
                ],
            )
            for record in records:
                _set_cursor_txn(txn, record.room_id, record.target, record.stream)

        if records:
            await self._run("room_connect_record_ferried", txn_fn)

    async def pointer_for(self, source_event_id: str, target_room_id: str) -> str | None:
        row = await self._first_row(
            "room_connect_pointer_for",
            "SELECT pointer_event_id FROM room_connect_pointers"
            " WHERE source_event_id = ? AND target_room_id = ?",
            (source_event_id, target_room_id),
        )
        return None if row is None else str(row[0])

    async def pointer_due(self, room_id: str, target_room_id: str, stream: int, ferry: str) -> bool:
        """Whether ``ferry`` is still to carry the event at ``stream`` of
        ``room_id`` into ``target_room_id``: the direction is active, the
        event came after its activation, and its cursor is before the event."""
        row = await self._first_row(
            "room_connect_pointer_due",
            "SELECT c.active_since, cur.stream_ordering FROM room_connect_connections AS c"
            " LEFT JOIN room_connect_cursors AS cur"
            " ON cur.room_id = c.room_id AND cur.target_room_id = c.other_room_id"
            " WHERE c.room_id = ? AND c.other_room_id = ? AND c.status = ? AND c.ferry = ?"
            " AND c.active_since IS NOT NULL",
            (room_id, target_room_id, Status.ACTIVE.value, ferry),
        )
        if row is None or int(row[0]) >= stream:
            return False
        return row[1] is None or int(row[1]) < stream

    async def original_of(self, pointer_event_id: str) -> SourceEvent | None:
        """The original of a pointer the bot sent."""
        row = await self._first_row(
            "room_connect_original_of",
            "SELECT source_room_id, source_event_id FROM room_connect_pointers"
            " WHERE pointer_event_id = ?",
            (pointer_event_id,),
        )
        return None if row is None else SourceEvent(str(row[0]), str(row[1]))
