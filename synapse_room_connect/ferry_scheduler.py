"""The ferry's scheduler: which directions to read, from where (cursors),
and which rooms may hold unread events (dirty rooms). One pass reads each
dirty direction's next events and hands them to a batch.

Durability comes from two facts rather than from an in-memory queue:
Synapse's ``events`` table is the record of what was persisted, and a
per-direction cursor says how far the ferry has read it; the cursor moves
only with what the batch recorded.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from synapse_room_connect import metrics
from synapse_room_connect.ferry_batch import Batch, BatchSender, Outcome
from synapse_room_connect.ferry_interfaces import SchedulerStore, TraitsReader
from synapse_room_connect.store import ActiveTarget, TimelineRow

BATCH_SIZE: Final = 100


class PassOutcome(enum.Enum):
    IDLE = "idle"  # nothing more to do until new events arrive
    MORE = "more"  # progress made or more to read: run another pass now
    RETRY_LATER = "retry_later"  # a send failed: run another pass after a delay


def _owns_all(_room_id: str, _other_room_id: str) -> bool:
    return True


@attrs.define
class FerryScheduler:
    _store: SchedulerStore
    _traits: TraitsReader
    _batches: BatchSender
    _bot_user_id: str
    _server_name: str
    # Whether this process carries the connection between two rooms
    # (sharding.py); every connection when the ferry runs on one process.
    _owns: Callable[[str, str], bool] = attrs.field(kw_only=True, default=_owns_all)
    # Bumped on every connection change so a pass in progress notices a
    # revocation before its next event, not at the end of its batch.
    _generation: int = attrs.field(init=False, default=0)
    # Source room -> its targets; None until (re)loaded. Only this process
    # writes connections' activation, so memory is current once it has
    # reloaded after each change.
    _targets: dict[str, list[ActiveTarget]] | None = attrs.field(init=False, default=None)
    active_rooms: frozenset[str] = attrs.field(init=False, default=frozenset())
    # Rooms that may have events the ferry has not read; every room with a
    # connection after a start or a connection change.
    _dirty: set[str] = attrs.field(init=False, factory=set)
    _all_dirty: bool = attrs.field(init=False, default=True)
    # (source, target) -> how far the ferry has read; written through to the
    # store with each pointer, and with skipped events after a batch.
    _cursors: dict[tuple[str, str], int] = attrs.field(init=False, factory=dict)

    def connections_changed(self) -> None:
        self._generation += 1
        self._targets = None
        self._all_dirty = True

    def events_in(self, room_ids: Iterable[str]) -> bool:
        """Mark rooms with new events; whether any of them is connected."""
        dirty = self.active_rooms.intersection(room_ids)
        self._dirty.update(dirty)
        return bool(dirty)

    def read_everything(self) -> None:
        """After a failed pass: the next reads every connected room again."""
        self._all_dirty = True

    def cursor(self, room_id: str, target: str) -> int | None:
        """How far the ferry has read this direction, as far as it knows."""
        return self._cursors.get((room_id, target))

    async def run_pass(self, upto: int) -> PassOutcome:
        """Ferry what dirty rooms hold up to stream position ``upto``."""
        generation = self._generation
        if self._targets is None:
            loaded = await self._store.active_targets(self._bot_user_id)
            owned = {r: [t for t in ts if self._owns(r, t.room_id)] for r, ts in loaded.items()}
            self._targets = {r: ts for r, ts in owned.items() if ts}
            self.active_rooms = frozenset(self._targets)
        targets = self._targets
        rooms = set(targets) if self._all_dirty else self._dirty & set(targets)
        self._all_dirty = False
        self._dirty.clear()
        progressed = False
        depth = 0
        for room_id in sorted(rooms):
            for active in targets[room_id]:
                read_from = await self._read_from(room_id, active)
                rows = await self._store.events_after(
                    room_id, read_from, upto, BATCH_SIZE, exclude_sender=self._bot_user_id
                )
                depth += len(rows)
                if not rows:
                    continue
                if len(rows) == BATCH_SIZE:
                    self._dirty.add(room_id)  # more to read in the next pass
                    progressed = True
                if not await self._ferries_content(room_id, active.room_id):
                    # Encrypted: clients fan out. Skip, but do not re-read.
                    self._cursors[(room_id, active.room_id)] = rows[-1].stream
                    await self._store.set_cursor(room_id, active.room_id, rows[-1].stream)
                    continue
                batch = Batch(room_id, active.room_id, recorded=read_from)
                outcome = await self._ferry_rows(batch, rows, generation)
                if outcome is PassOutcome.RETRY_LATER:
                    self._dirty.add(room_id)
                if outcome is not None:
                    return outcome
                progressed = progressed or batch.sent > 0
        metrics.ferry_queue_depth.labels(self._server_name).set(depth)
        return PassOutcome.MORE if progressed else PassOutcome.IDLE

    async def _read_from(self, room_id: str, active: ActiveTarget) -> int:
        key = (room_id, active.room_id)
        if key not in self._cursors:
            stored = await self._store.get_cursor(room_id, active.room_id)
            self._cursors[key] = stored or active.since
        # A connection activated again starts from its new consent: what was
        # said while it was revoked stays on its side.
        return max(self._cursors[key], active.since)

    async def _ferry_rows(
        self, batch: Batch, rows: list[TimelineRow], generation: int
    ) -> PassOutcome | None:
        """Ferry ``rows`` through ``batch``; None to go on with the pass."""
        try:
            for row in rows:
                if self._generation != generation:
                    await self._batches.flush(batch)
                    return PassOutcome.MORE  # connections changed: re-read them first
                if await self._batches.add(batch, row) is Outcome.RETRY_LATER:
                    return PassOutcome.RETRY_LATER
            if await self._batches.flush(batch) is Outcome.RETRY_LATER:
                return PassOutcome.RETRY_LATER
            return None
        finally:
            # Only what the store holds: a retry reads again from there.
            self._cursors[(batch.room_id, batch.target)] = batch.recorded

    async def _ferries_content(self, room_id: str, target: str) -> bool:
        """False when either room is encrypted: clients fan out instead."""
        for room in (room_id, target):
            traits = await self._traits.traits(room)
            if traits is not None and traits.encrypted:
                return False
        return True
