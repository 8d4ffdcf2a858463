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
from collections.abc import Callable, Sequence
from typing import Final, Literal

import attrs
from synapse.module_api import EventBase

from synapse_room_connect import metrics
from synapse_room_connect.ferry_interfaces import (
    Counterpart,
    EventSource,
    Moderation,
    Outgoing,
    PointerSender,
    Preparer,
    RecordsWriter,
)
from synapse_room_connect.ferry_prepare import references
from synapse_room_connect.store import FerriedPointer, TimelineRow

logger = logging.getLogger(__name__)

# Counterparts persisted together at most; Synapse persists 100 events a transaction.
MAX_BATCH: Final = 50
MAX_ATTEMPTS: Final = 5


class Outcome(enum.Enum):
    # Go on with the next event: this one was queued, sent, skipped or given up on.
    CONTINUE = "continue"
    # Stop here and read again from the first unrecorded event after a delay:
    # a transient failure must not lose an event.
    RETRY_LATER = "retry_later"
    # Only from a failed attempt: the last one allowed, so skip the event.
    GAVE_UP = "gave_up"


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
    ``recorded`` how far the store's cursor is known to be.
    """

    room_id: str
    target: str
    recorded: int
    last: int = 0
    sent: int = 0
    items: list[Item] = attrs.field(factory=list)
    sources: set[str] = attrs.field(factory=set)
    # (event, key) of the bot's reactions in the batch: Synapse allows one.
    reactions: set[tuple[str, str]] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self.last = self.recorded

    def skip(self, stream: int) -> None:
        self.last = stream

    def add(self, item: Item) -> bool:
        """Queue ``item``; False if it would repeat a reaction already queued."""
        if item.counterpart.type == "m.reaction":
            relates = item.counterpart.content["m.relates_to"]
            reaction = (relates["event_id"], relates["key"])
            if reaction in self.reactions:
                return False
            self.reactions.add(reaction)
        self.items.append(item)
        self.sources.add(item.original.event_id)
        self.last = item.stream
        return True

    def take(self) -> list[Item]:
        items, self.items = self.items, []
        self.sources.clear()
        self.reactions.clear()
        return items


@attrs.define
class BatchSender:
    """Fills batches event by event and sends them; counts failed attempts
    per (event, target) until the event is sent or given up on."""

    _events: EventSource
    _preparer: Preparer
    _moderation: Moderation
    _sender: PointerSender
    _records: RecordsWriter
    _server_name: str
    _clock_ms: Callable[[], int]
    # (event, target) -> failed attempts so far, for events still pending.
    _attempts: dict[tuple[str, str], int] = attrs.field(init=False, factory=dict)

    async def add(self, batch: Batch, row: TimelineRow) -> Outcome:
        """Queue one event's counterpart in ``batch``, sending the batch when
        it is full or before the event relates to one of its items.
        ``RETRY_LATER``: what came before the event is recorded, the event
        and what follows it are not."""
        event = await self._events.get_event(row.event_id)
        if event is None or not self._preparer.should_ferry(event):
            batch.skip(row.stream)
            return Outcome.CONTINUE
        withheld = await self._moderation.withheld_by(event, batch.target)
        if withheld is not None:
            metrics.ferry_withheld.labels(self._server_name, withheld.value).inc()
            logger.info(
                "Not ferrying %s from %s into %s: %s there",
                event.event_id,
                event.sender,
                batch.target,
                withheld.value,
            )
            batch.skip(row.stream)
            return Outcome.CONTINUE
        # A relation to a pointer still in the batch: Synapse checks a relation
        # against the persisted event, so send those first.
        related = batch.items and not batch.sources.isdisjoint(references(event))
        if related and await self.flush(batch) is Outcome.RETRY_LATER:
            return Outcome.RETRY_LATER
        try:
            counterpart = await self._preparer.prepare(event, batch.target)
        except Exception as e:
            if self._failed(event, batch.target, e) is Outcome.GAVE_UP:
                batch.skip(row.stream)
                return Outcome.CONTINUE
            await self.flush(batch)
            return Outcome.RETRY_LATER
        if counterpart is None or not batch.add(Item(event, row.stream, counterpart)):
            batch.skip(row.stream)
        elif len(batch.items) >= MAX_BATCH:
            return await self.flush(batch)
        return Outcome.CONTINUE

    async def flush(self, batch: Batch) -> Outcome:
        """Send and record what ``batch`` holds, and move the cursor over what
        it skipped. ``RETRY_LATER``: retry from the first unrecorded event."""
        items = batch.take()
        outcome = Outcome.CONTINUE
        if items:
            try:
                await self._send(batch, items, batch.last)
                batch.recorded = batch.last
            except Exception as e:
                outcome = await self._send_one_by_one(batch, items, e)
        if outcome is Outcome.CONTINUE and batch.last > batch.recorded:
            # Skipped events only: a crash before this just reads them again
            # and skips them again.
            await self._records.set_cursor(batch.room_id, batch.target, batch.last)
            batch.recorded = batch.last
        return outcome

    async def _send_one_by_one(self, batch: Batch, items: list[Item], error: Exception) -> Outcome:
        """After a batch failed: each alone, so one bad event holds back no other."""
        if len(items) == 1:
            if self._failed(items[0].original, batch.target, error) is Outcome.GAVE_UP:
                return Outcome.CONTINUE
            return Outcome.RETRY_LATER
        logger.info("Ferrying %d events together failed (%s); one at a time", len(items), error)
        for n, item in enumerate(items):
            # Up to the next item, everything in between was skipped.
            upto = items[n + 1].stream - 1 if n + 1 < len(items) else batch.last
            try:
                await self._send(batch, [item], upto)
                batch.recorded = upto
            except Exception as e:
                if self._failed(item.original, batch.target, e) is Outcome.RETRY_LATER:
                    return Outcome.RETRY_LATER
        return Outcome.CONTINUE

    def _failed(
        self, event: EventBase, target: str, e: Exception
    ) -> Literal[Outcome.RETRY_LATER, Outcome.GAVE_UP]:
        """Count a failed attempt at ``event``."""
        metrics.ferry_failures.labels(self._server_name).inc()
        key = (event.event_id, target)
        attempts = self._attempts.pop(key, 0) + 1
        if attempts >= MAX_ATTEMPTS:
            # A permanent failure (e.g. the bot was kicked) must not wedge
            # the connection forever: give up on this one, loudly.
            logger.error(
                "Giving up ferrying %s from %s into %s after %d attempts: %s",
                event.event_id,
                event.room_id,
                target,
                attempts,
                e,
            )
            return Outcome.GAVE_UP
        self._attempts[key] = attempts
        logger.warning(
            "Failed to ferry %s from %s into %s (attempt %d of %d): %s",
            event.event_id,
            event.room_id,
            target,
            attempts,
            MAX_ATTEMPTS,
            e,
        )
        return Outcome.RETRY_LATER

    async def _send(self, batch: Batch, items: Sequence[Item], cursor: int) -> None:
        """Send ``items`` and record them with the cursor at ``cursor``."""
        txn_ids = [transaction_id(item.original.event_id, batch.target) for item in items]
        # Sent before a crash but not recorded: Synapse kept the transaction IDs.
        sent = await self._sender.already_sent(batch.target, txn_ids)
        new = [
            Outgoing(txn_id, item.counterpart)
            for txn_id, item in zip(txn_ids, items, strict=True)
            if txn_id not in sent
        ]
        if new:
            ids = await self._sender.send(batch.target, new)
            metrics.ferry_batch_size.labels(self._server_name).observe(len(new))
            sent.update(zip((item.txn_id for item in new), ids, strict=True))
        pointers = [
            FerriedPointer(item.original.event_id, sent[txn_id])
            for txn_id, item in zip(txn_ids, items, strict=True)
        ]
        await self._records.record_ferried(batch.room_id, batch.target, pointers, cursor)
        now = self._clock_ms()
        for item, pointer in zip(items, pointers, strict=True):
            self._attempts.pop((item.original.event_id, batch.target), None)
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
        batch.sent += len(items)
