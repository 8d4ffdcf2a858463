"""The ferry's scheduler: which directions to read, from where (cursors),
and which rooms may hold unread events (dirty rooms). One pass reads every
dirty room's next events in one query and hands each direction's share to
a batch; the batches of a pass are sent and recorded together.

Durability comes from two facts rather than from an in-memory queue:
Synapse's ``events`` table is the record of what was persisted, and a
per-direction cursor says how far the ferry has read it; the cursor moves
only with what the batch recorded.

What a pass costs does not grow with the number of connections: it reads
only dirty rooms, each once whatever its number of targets; cursors are
read once per direction after a start, and a connection change reloads the
directions once and marks only the changed ones dirty.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import attrs

from synapse_room_connect import metrics
from synapse_room_connect.core.ghosts import Senders
from synapse_room_connect.ferry.batch import Batch, BatchSender, Outcome
from synapse_room_connect.ferry.crossing import Crossing, Passage
from synapse_room_connect.ferry.cursors import DirectionCursors
from synapse_room_connect.ferry.interfaces import SchedulerStore
from synapse_room_connect.ferry.lease import LeaseGate, NoLeases
from synapse_room_connect.store import ActiveTarget, TimelineRow
from synapse_room_connect.store.events import MAX_ROOMS_PER_READ

logger = logging.getLogger(__name__)

# Timeline rows one pass reads, over all its rooms.
BATCH_SIZE: Final = 100
# Directions and counterparts sent together at most: each target room's
# creation linearizer is held while its chain is built.
MAX_JOINT_DIRECTIONS: Final = 100
MAX_JOINT_ITEMS: Final = 200


class PassOutcome(enum.Enum):
    IDLE = "idle"  # nothing more to do until new events arrive
    MORE = "more"  # more to read: run another pass now
    RETRY_LATER = "retry_later"  # a send failed: run another pass after a delay


def _owns_all(_room_id: str, _other_room_id: str) -> bool:
    return True


def _nothing() -> None:
    return None


@attrs.define
class FerryScheduler:
    _store: SchedulerStore
    _crossing: Crossing
    _batches: BatchSender
    # How far each direction is recorded; shared with the batches, which
    # raise it as their writes commit.
    _cursors: DirectionCursors
    _bot_user_id: str
    _server_name: str
    # Whether this process carries the connection between two rooms
    # (core/sharding.py); every connection when the ferry runs on one process.
    _owns: Callable[[str, str], bool] = attrs.field(kw_only=True, default=_owns_all)
    # Called when there is something to read: the runner (runner.py) then
    # makes sure a pass runs.
    _on_work: Callable[[], None] = attrs.field(kw_only=True, default=_nothing)
    # Which connections this process may send for right now (ferry/lease.py).
    _leases: LeaseGate = attrs.field(kw_only=True, factory=NoLeases)
    # Who sends into a room whose consent does not say (config ``senders``).
    _default_senders: Senders = attrs.field(kw_only=True, default=Senders.BOT)
    # The ghosts' user IDs as a LIKE pattern: their events, like the bot's,
    # are never read (core/ghosts.py).
    _ghosts_like: str | None = attrs.field(kw_only=True, default=None)
    # Bumped on every connection change so a pass in progress notices a
    # revocation before its next event, not at the end of its batch.
    _generation: int = attrs.field(init=False, default=0)
    # Source room -> its targets, as of the last load; reloaded at the next
    # pass after each change. Only this process writes connections'
    # activation, so memory is current once it has reloaded.
    _targets: dict[str, list[ActiveTarget]] = attrs.field(init=False, factory=dict)
    _reload: bool = attrs.field(init=False, default=True)
    active_rooms: frozenset[str] = attrs.field(init=False, default=frozenset())
    # Rooms that may have events the ferry has not read: those with new
    # events, and those with a direction new since the last load.
    _dirty: set[str] = attrs.field(init=False, factory=set)
    # This pass's rooms -> their targets whose lease this process holds.
    _admitted: dict[str, list[ActiveTarget]] = attrs.field(init=False, factory=dict)
    # Rooms with a direction whose lease another process holds: asked for
    # again after a delay rather than in a loop.
    _waiting: set[str] = attrs.field(init=False, factory=set)

    def connections_changed(self) -> None:
        self._generation += 1
        self._reload = True
        self._on_work()

    def events_in(self, room_ids: Iterable[str]) -> None:
        """Mark rooms with new events; a pass runs if any of them is connected."""
        dirty = self.active_rooms.intersection(room_ids)
        if dirty:
            self._dirty.update(dirty)
            self._on_work()

    async def run_pass(self, position: Callable[[], int]) -> PassOutcome:
        """Ferry what dirty rooms hold, up to the stream position that
        ``position`` gives once the pass has taken its rooms."""
        generation = self._generation
        if self._reload:
            await self._load_targets()
        self._dirty |= self._waiting
        self._waiting.clear()
        self._dirty &= self._targets.keys()
        rooms = sorted(self._dirty)[:MAX_ROOMS_PER_READ]
        self._dirty.difference_update(rooms)
        # Read with the rooms, never before an await: a room marked dirty
        # while the connections were reloading has its event at or below
        # this position, and one marked later stays dirty for the next pass.
        # Read earlier, the mark was taken and its event left unread.
        upto = position()
        try:
            outcome = await self._pass(await self._admit(rooms), upto, generation)
        except BaseException:
            # Batches sent and recorded mid-pass moved the store's cursors
            # but not these; what is in memory for these rooms is stale. Read
            # the cursors again and look up before resending, or a resend
            # that Synapse deduplicates would leave a hole in the chain.
            self._dirty.update(rooms)
            for room_id in rooms:
                for active in self._targets.get(room_id, ()):
                    self._cursors.forget((room_id, active.room_id))
            self._reload = True
            raise
        if outcome is PassOutcome.IDLE and (self._dirty or self._reload):
            return PassOutcome.MORE
        if outcome is PassOutcome.IDLE and self._waiting:
            return PassOutcome.RETRY_LATER
        return outcome

    async def _admit(self, rooms: Sequence[str]) -> list[str]:
        """Those of ``rooms`` with a direction whose lease this process holds;
        the others wait for a later pass."""
        admission = await self._leases.admit(
            [(r, t.room_id) for r in rooms for t in self._targets[r]]
        )
        if admission.regained:
            # Another process may have ferried these since their cursors were
            # read: read them again, and look up before sending.
            for direction in admission.regained:
                self._cursors.forget(direction)
            stored = await self._store.cursors({r for r, _ in admission.regained})
            self._cursors.load({d: c for d, c in stored.items() if d in admission.regained})
        self._waiting.update(r for r, _ in admission.waiting)
        self._admitted = {
            r: held
            for r in rooms
            if (held := [t for t in self._targets[r] if (r, t.room_id) in admission.held])
        }
        return [r for r in rooms if r in self._admitted]

    async def _load_targets(self) -> None:
        """Load the directions; those new or changed since the last load
        (a new consent) are dirty, and their cursors are read in one query."""
        self._reload = False
        loaded = await self._store.active_targets(self._bot_user_id)
        owned = {r: [t for t in ts if self._owns(r, t.room_id)] for r, ts in loaded.items()}
        targets = {r: ts for r, ts in owned.items() if ts}
        kept = {(r, t.room_id) for r, ts in targets.items() for t in ts}
        for direction in {(r, t.room_id) for r, ts in self._targets.items() for t in ts} - kept:
            # Revoked, or now carried by another process: what this one
            # knows of it goes stale, so it is read again if it comes back.
            self._cursors.forget(direction)
            self._batches.drop(direction)
        fresh = {r for r, ts in targets.items() if set(ts) - set(self._targets.get(r, ()))}
        # New directions, and those whose cursor a failed pass dropped.
        unknown = {
            r
            for r, ts in targets.items()
            if any(not self._cursors.known((r, t.room_id)) for t in ts)
        }
        if unknown:
            self._cursors.load(await self._store.cursors(unknown))
        self._targets = targets
        self.active_rooms = frozenset(targets)
        self._dirty |= fresh

    def _read_from(self, room_id: str, active: ActiveTarget) -> int:
        return self._cursors.reads_from((room_id, active.room_id), active.since)

    async def _pass(self, rooms: Sequence[str], upto: int, generation: int) -> PassOutcome:
        if not rooms:
            # Caught up: without this the gauge would show the last read's
            # backlog for as long as the rooms stay quiet.
            metrics.ferry_queue_depth.labels(self._server_name).set(0)
            return PassOutcome.IDLE
        targets = self._admitted
        after = {r: min(self._read_from(r, t) for t in targets[r]) for r in rooms}
        read = await self._store.timelines_after(
            after,
            upto,
            BATCH_SIZE,
            exclude_sender=self._bot_user_id,
            fences_after=self._fences_after(rooms),
            exclude_like=self._ghosts_like,
        )
        metrics.ferry_queue_depth.labels(self._server_name).set(
            sum(len(rows) for rows in read.rows.values())
        )
        if read.full:
            self._dirty.update(rooms)  # more to read in the next pass
        pending: list[Batch] = []
        retry = False
        for room_id in rooms:
            rows = read.rows.get(room_id, [])
            for active in targets[room_id] if rows else ():
                senders = active.senders or self._default_senders
                batch = Batch(
                    room_id,
                    active.room_id,
                    self._cursors,
                    active.since,
                    by_ghost=senders is Senders.GHOSTS,
                )
                mine = [row for row in rows if row.stream > batch.recorded]
                if not mine:
                    continue
                passage = await self._crossing.passage(
                    batch.direction, read.fences, batch.recorded, read.upto
                )
                if passage.encrypted:
                    batch.skip(mine[-1].stream)  # clients fan out: no event to read
                elif await self._fill(batch, mine, passage, generation) is Outcome.RETRY_LATER:
                    # Recorded up to the failed event; nothing after it may be.
                    self._dirty.add(room_id)
                    retry = True
                    continue
                pending.append(batch)
                if self._generation != generation:
                    break
                if self._full(pending):
                    retry = await self._flush(pending) or retry
                    pending = []
            if self._generation != generation:
                break
        retry = await self._flush(pending) or retry
        if self._generation != generation:
            self._dirty.update(rooms)  # those not reached, under the new connections
        elif not read.full and not retry:
            metrics.ferry_queue_depth.labels(self._server_name).set(0)
        return PassOutcome.RETRY_LATER if retry else PassOutcome.IDLE

    def _fences_after(self, rooms: Sequence[str]) -> dict[str, int]:
        """Both rooms of each direction, each from the earliest cursor of a
        direction it is in: a change before that is already dealt with."""
        since: dict[str, int] = {}
        for room_id in rooms:
            for active in self._admitted[room_id]:
                position = self._read_from(room_id, active)
                for room in (room_id, active.room_id):
                    since[room] = min(since.get(room, position), position)
        return since

    async def _fill(
        self, batch: Batch, rows: list[TimelineRow], passage: Passage, generation: int
    ) -> Outcome:
        """Queue what of ``rows`` crosses in ``batch``, up to a connection
        change (re-read them first), a change that ended the connection
        (``HELD``: nothing more of it crosses) or an event that must be
        retried (``RETRY_LATER``)."""
        for row in rows:
            if self._generation != generation:
                return Outcome.CONTINUE
            outcome = await self._batches.add(batch, row, passage)
            if outcome is Outcome.HELD:
                logger.info(
                    "Not ferrying %s -> %s past the connection change at %s: no longer active",
                    *batch.direction,
                    passage.fence,
                )
                return Outcome.CONTINUE  # reconciliation ends the direction
            if outcome is Outcome.RETRY_LATER:
                return Outcome.RETRY_LATER
        skip_to = passage.skip_to
        if skip_to is not None and self._generation == generation:
            # Said before the consents now in force, and nothing of this room
            # after them read yet: the cursor passes over it all the same.
            batch.skip(max(batch.last, skip_to))
        return Outcome.CONTINUE

    @staticmethod
    def _full(pending: Sequence[Batch]) -> bool:
        items = sum(len(batch.items) for batch in pending)
        return len(pending) >= MAX_JOINT_DIRECTIONS or items >= MAX_JOINT_ITEMS

    async def _flush(self, pending: Sequence[Batch]) -> bool:
        """Send and record the pending batches together; whether one must be retried."""
        if not pending:
            return False
        retry = False
        for batch, outcome in zip(pending, await self._batches.flush(pending), strict=True):
            if outcome is Outcome.RETRY_LATER:
                self._dirty.add(batch.room_id)
                retry = True
        return retry
