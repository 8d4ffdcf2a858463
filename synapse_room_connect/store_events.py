"""Reads of Synapse's own tables: the events the feed and the ferry act on,
and the transaction IDs Synapse kept for what the bot sent.

Synapse's ``events`` table is the durable record of what was persisted, so
nothing here depends on a notification having arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect.store_schema import StoreBase


@attrs.frozen
class NewEvent:
    """A newly persisted timeline event, as much of it as the module decides on."""

    stream: int
    event_id: str
    room_id: str
    type: str
    sender: str
    state_key: str | None = None
    membership: str | None = None


@attrs.frozen
class TimelineRow:
    """One event of a room's timeline at its stream position."""

    stream: int
    event_id: str


class SynapseEventsStore(StoreBase):
    async def events_after(
        self, room_id: str, after: int, upto: int, limit: int, exclude_sender: str
    ) -> list[TimelineRow]:
        """Timeline events of ``room_id`` in stream positions (after, upto], in order.

        ``upto`` is a position up to which everything is persisted, so an
        event another writer commits late is not skipped. Outliers and
        rejected events are not part of the timeline; the bot's own events
        (pointers, notices) are never carried, and leaving them out here
        spares a pass per pointer.
        """

        def txn_fn(txn: LoggingTransaction) -> list[TimelineRow]:
            txn.execute(
                """
                SELECT e.stream_ordering, e.event_id FROM events AS e
                LEFT JOIN rejections AS r ON r.event_id = e.event_id
                WHERE e.room_id = ? AND e.stream_ordering > ? AND e.stream_ordering <= ?
                    AND NOT e.outlier AND r.event_id IS NULL AND e.sender != ?
                ORDER BY e.stream_ordering
                LIMIT ?
                """,
                (room_id, after, upto, exclude_sender, limit),
            )
            return [TimelineRow(int(row[0]), str(row[1])) for row in txn.fetchall()]

        return await self._run("room_connect_events_after", txn_fn)

    async def new_events(self, after: int, upto: int, limit: int) -> list[NewEvent]:
        """Every room's timeline events in stream positions (after, upto], in order."""

        def txn_fn(txn: LoggingTransaction) -> list[NewEvent]:
            txn.execute(
                """
                SELECT e.stream_ordering, e.event_id, e.room_id, e.type, e.sender,
                    e.state_key, m.membership
                FROM events AS e
                LEFT JOIN rejections AS r ON r.event_id = e.event_id
                LEFT JOIN room_memberships AS m ON m.event_id = e.event_id
                WHERE e.stream_ordering > ? AND e.stream_ordering <= ?
                    AND NOT e.outlier AND r.event_id IS NULL
                ORDER BY e.stream_ordering
                LIMIT ?
                """,
                (after, upto, limit),
            )
            return [NewEvent(int(row[0]), *row[1:]) for row in txn.fetchall()]

        return await self._run("room_connect_new_events", txn_fn)

    async def sent_transactions(
        self, room_id: str, user_id: str, device_id: str, txn_ids: Sequence[str]
    ) -> dict[str, str]:
        """Transaction ID -> event ID of those already sent, from Synapse's own
        record (kept for a day): what a crash between sending and recording
        left behind."""

        def txn_fn(txn: LoggingTransaction) -> dict[str, str]:
            marks = ", ".join("?" for _ in txn_ids)
            txn.execute(
                "SELECT txn_id, event_id FROM event_txn_id_device_id"
                f" WHERE room_id = ? AND user_id = ? AND device_id = ? AND txn_id IN ({marks})",
                (room_id, user_id, device_id, *txn_ids),
            )
            return {str(row[0]): str(row[1]) for row in txn.fetchall()}

        if not txn_ids:
            return {}
        return await self._run("room_connect_sent_transactions", txn_fn)
