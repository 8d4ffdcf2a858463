"""The ferry's records: how far it has read each direction (cursors) and
which pointer stands for which original in which room."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect.store_schema import StoreBase


@attrs.frozen
class FerriedPointer:
    """An original and the pointer that carries it into one target room."""

    source_event_id: str
    pointer_event_id: str


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
    async def get_cursor(self, room_id: str, target_room_id: str) -> int | None:
        row = await self._first_row(
            "room_connect_get_cursor",
            "SELECT stream_ordering FROM room_connect_cursors"
            " WHERE room_id = ? AND target_room_id = ?",
            (room_id, target_room_id),
        )
        return None if row is None else int(row[0])

    async def set_cursor(self, room_id: str, target_room_id: str, stream: int) -> None:
        def txn_fn(txn: LoggingTransaction) -> None:
            _set_cursor_txn(txn, room_id, target_room_id, stream)

        await self._run("room_connect_set_cursor", txn_fn)

    async def record_ferried(
        self, room_id: str, target: str, pointers: Sequence[FerriedPointer], stream: int
    ) -> None:
        """Record the pointers that carry ``room_id``'s events into ``target``
        and move the cursor to ``stream``, atomically: a crash leaves either
        both or neither, and a resend after "neither" is answered from
        Synapse's transaction IDs."""

        def txn_fn(txn: LoggingTransaction) -> None:
            txn.execute_batch(
                """
                INSERT INTO room_connect_pointers
                    (source_room_id, source_event_id, target_room_id, pointer_event_id)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (source_event_id, target_room_id) DO NOTHING
                """,
                [(room_id, p.source_event_id, target, p.pointer_event_id) for p in pointers],
            )
            _set_cursor_txn(txn, room_id, target, stream)

        await self._run("room_connect_record_ferried", txn_fn)

    async def pointer_for(self, source_event_id: str, target_room_id: str) -> str | None:
        row = await self._first_row(
            "room_connect_pointer_for",
            "SELECT pointer_event_id FROM room_connect_pointers"
            " WHERE source_event_id = ? AND target_room_id = ?",
            (source_event_id, target_room_id),
        )
        return None if row is None else str(row[0])

    async def original_of(self, pointer_event_id: str) -> SourceEvent | None:
        """The original of a pointer the bot sent."""
        row = await self._first_row(
            "room_connect_original_of",
            "SELECT source_room_id, source_event_id FROM room_connect_pointers"
            " WHERE pointer_event_id = ?",
            (pointer_event_id,),
        )
        return None if row is None else SourceEvent(str(row[0]), str(row[1]))
