"""Reads of Synapse's own tables: the events the feed and the ferry act on,
and the transaction IDs Synapse kept for what the bot sent.

Synapse's ``events`` table is the durable record of what was persisted, so
nothing here depends on a notification having arrived. The SQL itself is in
``synapse_compat.sql``, with the other uses of Synapse internals.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect import metrics
from synapse_room_connect.constants import FENCE_EVENT_TYPES
from synapse_room_connect.store.records import NewEvent, TimelineRow
from synapse_room_connect.store.schema import StoreBase
from synapse_room_connect.synapse_compat import sql
from synapse_room_connect.synapse_compat.sql import MAX_ROOMS_PER_READ

__all__ = [
    "MAX_ROOMS_PER_READ",
    "NewEvent",
    "SynapseEventsStore",
    "TimelineRead",
    "TimelineRow",
]


@attrs.frozen
class TimelineRead:
    """Several rooms' timelines read together, each after its own position.

    ``upto`` is how far every room was read: the requested end, or the last
    row's position when the read hit its limit (the rest is read next time).
    """

    rows: dict[str, list[TimelineRow]]
    upto: int
    full: bool
    # Room -> stream positions of its connection and room-trait state events
    # up to ``upto`` (ferry/crossing.py), for the rooms asked about.
    fences: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict)


class SynapseEventsStore(StoreBase):
    def _count_rows(self, desc: str, rows: int) -> None:
        metrics.ferry_rows_read.labels(self._api.server_name, desc).inc(rows)

    async def timelines_after(
        self,
        after: Mapping[str, int],
        upto: int,
        limit: int,
        exclude_sender: str,
        fences_after: Mapping[str, int] | None = None,
        exclude_like: str | None = None,
    ) -> TimelineRead:
        """Timeline events of each room in ``after`` in stream positions
        (after[room], upto], in one read however many rooms there are.

        ``upto`` is a position up to which everything is persisted, so an
        event another writer commits late is not skipped. Outliers and
        rejected events are not part of the timeline; the bot's own events
        (pointers, notices) and its ghosts' (``exclude_like``, a LIKE pattern
        with escape ``!``) are never carried, and leaving them out here
        spares a pass per pointer. Each room's own position is in the join,
        so no row before it is read, however far behind another room is.

        In the same transaction: the connection and room-trait changes in
        each room of ``fences_after`` after its position (whoever sent them),
        so a change the ferry has not yet been told about is seen with the
        events after it.
        """
        if len(after) > MAX_ROOMS_PER_READ:
            raise ValueError(f"at most {MAX_ROOMS_PER_READ} rooms in one read, not {len(after)}")
        if not after:
            return TimelineRead({}, upto, full=False)

        def read(
            txn: LoggingTransaction,
        ) -> tuple[list[sql.RoomEventRow], list[sql.RoomEventRow]]:
            found = sql.timelines_after(txn, after, upto, limit, exclude_sender, exclude_like)
            end = found[-1][1] if len(found) >= limit else upto
            changes = (
                sql.state_changes_in(txn, fences_after, FENCE_EVENT_TYPES, end)
                if fences_after
                else []
            )
            return found, changes

        found, changes = await self._run("room_connect_timelines_after", read)
        self._count_rows("room_connect_timelines_after", len(found) + len(changes))
        rows: dict[str, list[TimelineRow]] = {}
        for room_id, stream, event_id in found:
            rows.setdefault(room_id, []).append(TimelineRow(stream, event_id))
        fences: dict[str, list[int]] = {}
        for room_id, stream, _ in changes:
            fences.setdefault(room_id, []).append(stream)
        full = len(found) >= limit
        return TimelineRead(
            rows,
            found[-1][1] if full else upto,
            full,
            {room_id: tuple(streams) for room_id, streams in fences.items()},
        )

    async def new_events(self, after: int, upto: int, limit: int) -> list[NewEvent]:
        """Every room's timeline events in stream positions (after, upto], in order."""

        rows = await self._run(
            "room_connect_new_events", lambda txn: sql.new_events(txn, after, upto, limit)
        )
        self._count_rows("room_connect_new_events", len(rows))
        return [NewEvent(*row) for row in rows]

    async def sent_transactions(
        self, device_id: str, wanted: Collection[tuple[str, str, str]]
    ) -> dict[tuple[str, str], str]:
        """(room, transaction ID) -> event ID of those already sent, for each
        (room, transaction ID, sender) wanted, from Synapse's own record (kept
        for a day), for any number of rooms and senders in one read: what a
        crash between sending and recording left behind, or what Synapse
        deduplicated instead of persisting."""
        triples = set(wanted)
        if not triples:
            return {}
        found = await self._run(
            "room_connect_sent_transactions",
            lambda txn: sql.sent_transactions(txn, device_id, triples),
        )
        self._count_rows("room_connect_sent_transactions", len(found))
        return found

    async def ghosts_joined(self, room_id: str, ghost_like: str) -> list[str]:
        """Ghosts (user IDs matching the LIKE pattern ``ghost_like``, escape
        ``!``) joined to ``room_id``."""
        return await self._run(
            "room_connect_ghosts_joined", lambda txn: sql.members_like(txn, room_id, ghost_like)
        )
