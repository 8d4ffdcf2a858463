"""Reads of Synapse's own tables: the events the feed and the ferry act on,
and the transaction IDs Synapse kept for what the bot sent.

Synapse's ``events`` table is the durable record of what was persisted, so
nothing here depends on a notification having arrived.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Final

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect import metrics
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


@attrs.frozen
class TimelineRead:
    """Several rooms' timelines read together, each after its own position.

    ``upto`` is how far every room was read: the requested end, or the last
    row's position when the read hit its limit (the rest is read next time).
    """

    rows: dict[str, list[TimelineRow]]
    upto: int
    full: bool


# Rooms per timeline read: well under SQLite's 999 bound parameters, 2 each.
MAX_ROOMS_PER_READ: Final = 400


def _count(desc: str, rows: int) -> None:
    metrics.ferry_rows_read.labels(desc).inc(rows)


class SynapseEventsStore(StoreBase):
    async def timelines_after(
        self, after: Mapping[str, int], upto: int, limit: int, exclude_sender: str
    ) -> TimelineRead:
        """Timeline events of each room in ``after`` in stream positions
        (after[room], upto], in one read however many rooms there are.

        ``upto`` is a position up to which everything is persisted, so an
        event another writer commits late is not skipped. Outliers and
        rejected events are not part of the timeline; the bot's own events
        (pointers, notices) are never carried, and leaving them out here
        spares a pass per pointer. Each room's own position is in the join,
        so no row before it is read, however far behind another room is.
        """
        if len(after) > MAX_ROOMS_PER_READ:
            raise ValueError(f"at most {MAX_ROOMS_PER_READ} rooms in one read, not {len(after)}")
        if not after:
            return TimelineRead({}, upto, full=False)
        values = ", ".join("(?, ?)" for _ in after)
        args = [arg for room_id, position in sorted(after.items()) for arg in (room_id, position)]

        def txn_fn(txn: LoggingTransaction) -> list[tuple[str, int, str]]:
            txn.execute(
                f"""
                WITH positions AS (SELECT * FROM (VALUES {values}) AS p)
                SELECT e.room_id, e.stream_ordering, e.event_id
                FROM positions AS p
                JOIN events AS e ON e.room_id = p.column1 AND e.stream_ordering > p.column2
                LEFT JOIN rejections AS r ON r.event_id = e.event_id
                WHERE e.stream_ordering <= ? AND NOT e.outlier AND r.event_id IS NULL
                    AND e.sender != ?
                ORDER BY e.stream_ordering
                LIMIT ?
                """,
                (*args, upto, exclude_sender, limit),
            )
            return [(str(row[0]), int(row[1]), str(row[2])) for row in txn.fetchall()]

        found = await self._run("room_connect_timelines_after", txn_fn)
        _count("room_connect_timelines_after", len(found))
        rows: dict[str, list[TimelineRow]] = {}
        for room_id, stream, event_id in found:
            rows.setdefault(room_id, []).append(TimelineRow(stream, event_id))
        full = len(found) >= limit
        return TimelineRead(rows, found[-1][1] if full else upto, full)

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

        rows = await self._run("room_connect_new_events", txn_fn)
        _count("room_connect_new_events", len(rows))
        return rows

    async def sent_transactions(
        self, user_id: str, device_id: str, wanted: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """(room, transaction ID) -> event ID of those already sent, from
        Synapse's own record (kept for a day), for any number of rooms in one
        read: what a crash between sending and recording left behind, or
        what Synapse deduplicated instead of persisting."""
        pairs = sorted(set(wanted))

        def txn_fn(txn: LoggingTransaction) -> dict[tuple[str, str], str]:
            found: dict[tuple[str, str], str] = {}
            for n in range(0, len(pairs), MAX_ROOMS_PER_READ):
                chunk = pairs[n : n + MAX_ROOMS_PER_READ]
                values = ", ".join("(?, ?)" for _ in chunk)
                # One index probe per pair, on Synapse's unique
                # (user_id, device_id, room_id, txn_id).
                txn.execute(
                    f"""
                    WITH wanted AS (SELECT * FROM (VALUES {values}) AS w)
                    SELECT t.room_id, t.txn_id, t.event_id
                    FROM wanted AS w
                    JOIN event_txn_id_device_id AS t
                        ON t.room_id = w.column1 AND t.txn_id = w.column2
                    WHERE t.user_id = ? AND t.device_id = ?
                    """,
                    (*(arg for pair in chunk for arg in pair), user_id, device_id),
                )
                found.update(((str(r[0]), str(r[1])), str(r[2])) for r in txn.fetchall())
            return found

        if not pairs:
            return {}
        found = await self._run("room_connect_sent_transactions", txn_fn)
        _count("room_connect_sent_transactions", len(found))
        return found
