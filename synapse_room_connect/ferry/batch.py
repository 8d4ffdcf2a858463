"""The batch: counterparts for one direction (source room -> target room),
collected and sent together, recorded with the cursor, and retried one by one
when sending them together fails.

Exactly once: each counterpart is sent with a transaction ID derived from
(original, target room), so re-reading after a crash between sending and
recording finds what Synapse already stored instead of sending it again.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

import attrs
from synapse.module_api import EventBase

from synapse_room_connect import metrics
from synapse_room_connect.ferry.attempts import FailedAttempts
from synapse_room_connect.ferry.crossing import Crossing, CrossingVerdict, Passage
from synapse_room_connect.ferry.cursors import DirectionCursors
from synapse_room_connect.ferry.held import HeldEvents
from synapse_room_connect.ferry.interfaces import (
    Counterpart,
    EventSource,
    Outgoing,
    PointerSender,
    Preparer,
    RecordsWriter,
    RelationPendingError,
)
from synapse_room_connect.ferry.lease import LeaseGate, NoLeases
from synapse_room_connect.ferry.prepare import references
from synapse_room_connect.store import FerriedPointer, FerryRecord, TimelineRow

logger = logging.getLogger(__name__)

# Counterparts persisted together at most; Synapse persists 100 events a transaction.
MAX_BATCH: Final = 50


class Outcome(enum.Enum):
    # Go on with the next event: this one was queued, sent, skipped or given up on.
    CONTINUE = "continue"
    # Stop here and read again from the first unrecorded event after a delay:
    # a transient failure must not lose an event.
    RETRY_LATER = "retry_later"
    # Stop the direction here, its cursor before the event: past a change
    # that ended the connection, nothing more of it crosses.
    HELD = "held"


def transaction_id(event_id: str, target: str) -> str:
    return f"msc2923:{event_id}:{target}"


@attrs.frozen
class Item:
    original: EventBase
    stream: int
    counterpart: Counterpart


@attrs.define
class Batch:
    """Counterparts for one direction, sent together (``MAX_BATCH`` at most).

    ``last`` is the position after which nothing has been looked at yet;
    ``recorded`` how far the store's cursor is, as ``cursors`` (the one copy
    in memory) says, never before where the direction reads from.
    """

    room_id: str
    target: str
    _cursors: DirectionCursors
    _start: int
    last: int = attrs.field(init=False)
    sent: int = 0
    items: list[Item] = attrs.field(factory=list)
    sources: set[str] = attrs.field(factory=set)
    # (event, key, sender) of the reactions in the batch: Synapse allows one.
    reactions: set[tuple[str, str, str | None]] = attrs.field(factory=set)
    # Whether the target room has authors' ghosts send (ActiveTarget.senders).
    by_ghost: bool = attrs.field(default=False, kw_only=True)
    # Events the batch redacts: the bot's one reaction with a key, which
    # several reactors' redactions may each find standing, goes once.
    redacting: set[str] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self.last = self.recorded

    @property
    def direction(self) -> tuple[str, str]:
        return (self.room_id, self.target)

    @property
    def recorded(self) -> int:
        return self._cursors.reads_from(self.direction, self._start)

    def record(self, position: int) -> None:
        """The store now holds ``position`` as the direction's cursor."""
        self._cursors.recorded(self.direction, position)

    def skip(self, stream: int) -> None:
        self.last = stream

    def add(self, item: Item) -> bool:
        """Queue ``item``; False if it would repeat a reaction or a redaction
        already queued."""
        if item.counterpart.type == "m.reaction":
            relates = item.counterpart.content["m.relates_to"]
            reaction = (relates["event_id"], relates["key"], item.counterpart.sender)
            if reaction in self.reactions:
                return False
            self.reactions.add(reaction)
        redacts = item.counterpart.redacts
        if redacts is not None:
            if redacts in self.redacting:
                return False
            self.redacting.add(redacts)
        self.items.append(item)
        self.sources.add(item.original.event_id)
        self.last = item.stream
        return True

    def take(self) -> list[Item]:
        items, self.items = self.items, []
        self.sources.clear()
        self.reactions.clear()
        self.redacting.clear()
        return items


@attrs.frozen
class _Job:
    """A batch's items to send, and where its cursor moves once they are recorded."""

    batch: Batch
    items: tuple[Item, ...]
    cursor: int

    @property
    def direction(self) -> tuple[str, str]:
        return self.batch.direction

    def wanted(self) -> list[tuple[str, str]]:
        """(target room, transaction ID) of each item, in order."""
        target = self.batch.target
        return [(target, transaction_id(i.original.event_id, target)) for i in self.items]

    def asked(self) -> list[tuple[str, str, str | None]]:
        """``wanted``, each with the item's sender (None: the bot)."""
        return [
            (target, txn_id, item.counterpart.sender)
            for (target, txn_id), item in zip(self.wanted(), self.items, strict=True)
        ]


@attrs.define
class BatchSender:
    """Fills batches event by event and sends them, several directions
    together; counts failed attempts per (event, target) until the event is
    sent or given up on."""

    _events: EventSource
    _preparer: Preparer
    _crossing: Crossing
    _sender: PointerSender
    _records: RecordsWriter
    _cursors: DirectionCursors
    _server_name: str
    _clock_ms: Callable[[], int]
    # Which connections this process may send for right now (ferry_lease.py).
    _leases: LeaseGate = attrs.field(kw_only=True, factory=NoLeases)
    _attempts: FailedAttempts = attrs.field(init=False)
    held: HeldEvents = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._attempts = FailedAttempts(self._server_name)
        self.held = HeldEvents(self._server_name, self._clock_ms)

    def drop(self, direction: tuple[str, str]) -> None:
        """The direction is no longer carried here (revoked, or now another
        process's): forget its held events. If it comes back, an event still
        waiting for its relation waits afresh, as after a restart, rather
        than going without it at once."""
        self.held.drop(direction)

    async def add(self, batch: Batch, row: TimelineRow, passage: Passage) -> Outcome:
        """Queue one event's counterpart in ``batch`` if it crosses, sending
        the batch when it is full or before the event relates to one of its
        items. ``RETRY_LATER``: what came before the event is recorded, the
        event and what follows it are not; ``HELD``: nothing from the event on
        crosses."""
        verdict = passage.at(row.stream)
        if verdict is CrossingVerdict.HOLD:
            return Outcome.HELD
        event = None if verdict is not None else await self._events.get_event(row.event_id)
        if event is None:
            self._skip(batch, row)
            return Outcome.CONTINUE
        verdict = await self._crossing.crosses(event, row.stream, batch.target, passage)
        if verdict is not CrossingVerdict.CROSSES:
            withheld = verdict.withheld
            if withheld is not None:
                metrics.ferry_withheld.labels(self._server_name, withheld.value).inc()
                logger.info(
                    "Not ferrying %s from %s into %s: %s there",
                    event.event_id,
                    event.sender,
                    batch.target,
                    withheld.value,
                )
            self._skip(batch, row)
            return Outcome.CONTINUE
        # A relation to a pointer still in the batch: Synapse checks a relation
        # against the persisted event, so send those first.
        related = batch.items and not batch.sources.isdisjoint(references(event))
        # A reaction after a queued redaction: whether the bot's reaction
        # with its key still stands is only known once that redaction is sent.
        related = related or (event.type == "m.reaction" and bool(batch.redacting))
        if related and await self.flush_one(batch) is Outcome.RETRY_LATER:
            return Outcome.RETRY_LATER
        direction = batch.direction
        wait = self.held.may_wait(direction, event.event_id)
        try:
            counterpart = await self._preparer.prepare(
                event, batch.target, wait_for_relations=wait, by_ghost=batch.by_ghost
            )
        except RelationPendingError as e:
            # Not a failure: order per direction holds it and what follows.
            self.held.hold(direction, event.event_id)
            logger.info("Holding %s back from %s: %s", event.event_id, batch.target, e)
            await self.flush_one(batch)
            return Outcome.RETRY_LATER
        except Exception as e:
            if self._attempts.give_up(event, batch.target, e):
                self._skip(batch, row)
                return Outcome.CONTINUE
            await self.flush_one(batch)
            return Outcome.RETRY_LATER
        if self.held.release(direction, event.event_id) and not wait:
            logger.warning(
                "%s goes into %s without waiting longer for its relation",
                event.event_id,
                batch.target,
            )
        if counterpart is None or not batch.add(Item(event, row.stream, counterpart)):
            batch.skip(row.stream)
        elif len(batch.items) >= MAX_BATCH:
            return await self.flush_one(batch)
        return Outcome.CONTINUE

    def _skip(self, batch: Batch, row: TimelineRow) -> None:
        """Pass over the event: if it was held, it waits no longer."""
        self.held.release(batch.direction, row.event_id)
        batch.skip(row.stream)

    async def flush_one(self, batch: Batch) -> Outcome:
        return (await self.flush([batch]))[0]

    async def flush(self, batches: Sequence[Batch]) -> list[Outcome]:
        """Send what the batches hold (into different target rooms together)
        and record them, with the cursors over what they skipped, in one
        write; a batch that fails is retried alone, one item at a time. Per
        batch, ``RETRY_LATER``: retry from its first unrecorded event."""
        jobs = [_Job(b, tuple(b.take()), b.last) for b in batches]
        sent = [j for j in jobs if j.items or j.cursor > j.batch.recorded]
        errors = await self._send(sent)
        # Directions into one target room share its chain: a failure there
        # may be another direction's item, so only a lone job is to blame.
        per_target = Counter(j.batch.target for j in sent)
        outcomes = []
        for job in jobs:
            batch, outcome = job.batch, Outcome.CONTINUE
            error = errors.get(id(job))
            if error is None:
                batch.record(job.cursor)
            elif job.items:
                alone = per_target[batch.target] == 1
                outcome = await self._send_one_by_one(batch, list(job.items), error, alone)
                if outcome is Outcome.CONTINUE and batch.last > batch.recorded:
                    outcome = await self.flush_one(batch)  # skipped events only
            else:
                outcome = Outcome.RETRY_LATER  # only a cursor, and its write failed
            outcomes.append(outcome)
        return outcomes

    async def _send_one_by_one(
        self, batch: Batch, items: list[Item], error: Exception, alone: bool
    ) -> Outcome:
        """After a batch failed: each alone, so one bad event holds back no other
        (and is not given up for another direction's bad event)."""
        if len(items) == 1 and alone:
            if self._attempts.give_up(items[0].original, batch.target, error):
                return Outcome.CONTINUE
            return Outcome.RETRY_LATER
        logger.info("Ferrying %d events together failed (%s); one at a time", len(items), error)
        for n, item in enumerate(items):
            # Up to the next item, everything in between was skipped.
            upto = items[n + 1].stream - 1 if n + 1 < len(items) else batch.last
            job = _Job(batch, (item,), upto)
            failure = (await self._send([job])).get(id(job))
            if failure is None:
                batch.record(upto)
            elif not self._attempts.give_up(item.original, batch.target, failure):
                return Outcome.RETRY_LATER
        return Outcome.CONTINUE

    async def _send(self, jobs: Sequence[_Job]) -> dict[int, Exception]:
        """``_send_held`` while holding the jobs' leases; ``LeaseLostError``
        when one is gone, before anything is sent."""
        if not jobs:
            return {}
        async with self._leases.sending([job.direction for job in jobs]):
            return await self._send_held(jobs)

    async def _send_held(self, jobs: Sequence[_Job]) -> dict[int, Exception]:
        """Send the jobs' items, one chain per target room in job order, and
        record those that went with their cursors in one write; the error of
        each job (by ``id``) that did not."""
        errors: dict[int, Exception] = {}
        if not jobs:
            return errors
        # Sent before a crash but not recorded: Synapse kept the transaction
        # IDs. Sending such an item again would leave a hole in the chain.
        unsettled = [
            w for j in jobs if not self._cursors.is_settled(j.direction) for w in j.asked()
        ]
        before = await self._sender.already_sent(unsettled) if unsettled else {}
        chains: dict[str, list[Outgoing]] = {}
        for job in jobs:
            for (target, txn_id), item in zip(job.wanted(), job.items, strict=True):
                if (target, txn_id) not in before:
                    chains.setdefault(target, []).append(Outgoing(txn_id, item.counterpart))
        failed = await self._sender.send(chains) if chains else {}
        for chain in chains.values():
            metrics.ferry_batch_size.labels(self._server_name).observe(len(chain))
        # What Synapse stored, not what was built: it may have deduplicated an item.
        sent = await self._sender.already_sent([w for j in jobs for w in j.asked()])
        records = []
        for job in jobs:
            missing = [txn_id for w in job.wanted() if w not in sent for txn_id in w[1:]]
            if missing:
                target = job.batch.target
                errors[id(job)] = failed.get(target) or RuntimeError(f"{missing[0]} not persisted")
                continue
            pointers = tuple(
                FerriedPointer(item.original.event_id, sent[w])
                for w, item in zip(job.wanted(), job.items, strict=True)
            )
            record = FerryRecord(job.batch.room_id, job.batch.target, pointers, job.cursor)
            records.append((job, record))
        try:
            await self._records.record_ferried([record for _, record in records])
        except Exception as e:
            errors.update((id(job), e) for job, _ in records)
            records = []
        for job in jobs:
            self._cursors.settle(job.direction, id(job) not in errors)
        self._done(records)
        return errors

    def _done(self, records: Sequence[tuple[_Job, FerryRecord]]) -> None:
        now = self._clock_ms()
        for job, record in records:
            batch = job.batch
            for item, pointer in zip(job.items, record.pointers, strict=True):
                self._attempts.sent(item.original.event_id, batch.target)
                kind = item.counterpart.kind.value
                metrics.ferried_events.labels(self._server_name, kind).inc()
                latency = (now - int(item.original.origin_server_ts)) / 1000
                metrics.ferry_latency.labels(self._server_name).observe(max(latency, 0.0))
                logger.debug(
                    "Ferried %s %s into %s as %s",
                    kind,
                    item.original.event_id,
                    batch.target,
                    pointer.pointer_event_id,
                )
            batch.sent += len(job.items)
