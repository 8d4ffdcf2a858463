"""In-memory stand-ins for what the ferry reads, writes and sends through
(the protocols in ``synapse_room_connect.ferry.interfaces``), and a way to
build real Synapse events for them.

Where a stand-in imitates Synapse, its docstring names the Synapse code it
imitates; each was checked against Synapse 1.163.2's source."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs
from synapse.api.room_versions import RoomVersions
from synapse.events import EventBase, make_event_from_dict

from synapse_room_connect.constants import FENCE_EVENT_TYPES
from synapse_room_connect.core.handshake import RoomTraits
from synapse_room_connect.ferry.batch import BatchSender
from synapse_room_connect.ferry.crossing import Crossing, PastFence
from synapse_room_connect.ferry.cursors import DirectionCursors
from synapse_room_connect.ferry.interfaces import (
    Counterpart,
    CounterpartKind,
    Outgoing,
    RelationPendingError,
    Withheld,
)
from synapse_room_connect.ferry.prepare import counterpart_of
from synapse_room_connect.ferry.scheduler import FerryScheduler, PassOutcome
from synapse_room_connect.store import (
    ActiveTarget,
    FerriedPointer,
    FerryRecord,
    SourceEvent,
    TimelineRead,
    TimelineRow,
)

BOT = "@room-connect:hs1"
ALICE = "@alice:hs1"
SOURCE, TARGET = "!source:hs1", "!target:hs1"


def event(
    event_id: str,
    *,
    type: str = "m.room.message",
    sender: str = ALICE,
    room_id: str = SOURCE,
    content: dict[str, Any] | None = None,
    **fields: Any,
) -> EventBase:
    """A real Synapse event (room version 1, where the event ID is given)."""
    return make_event_from_dict(
        {
            "event_id": event_id,
            "room_id": room_id,
            "type": type,
            "sender": sender,
            "content": content if content is not None else {"body": event_id},
            "origin_server_ts": 1000,
            "auth_events": [],
            "prev_events": [],
            "depth": 1,
            "hashes": {"sha256": "x"},
            "signatures": {},
            **fields,
        },
        RoomVersions.V1,
    )


def reply(event_id: str, to: str) -> EventBase:
    return event(
        event_id, content={"body": event_id, "m.relates_to": {"m.in_reply_to": {"event_id": to}}}
    )


def in_thread(event_id: str, root: str) -> EventBase:
    """A message in the thread of ``root``: a relation (``rel_type``) that
    Synapse checks against the events it has, unlike a plain reply."""
    return event(
        event_id,
        content={"body": event_id, "m.relates_to": {"rel_type": "m.thread", "event_id": root}},
    )


@attrs.define
class Recorded:
    """One ``record_ferried`` call."""

    room_id: str
    target: str
    pointers: list[FerriedPointer]
    stream: int


class MemoryFerryStore:
    """Cursors, pointer mappings and timelines in dictionaries; implements
    ``SchedulerStore``, ``RecordsWriter`` and ``PointerLookup``."""

    def __init__(self) -> None:
        self.targets: dict[str, list[ActiveTarget]] = {}
        self.cursors_: dict[tuple[str, str], int] = {}
        self.pointers: dict[tuple[str, str], str] = {}
        self.originals: dict[str, SourceEvent] = {}
        # room -> [(stream, event ID, sender)], in stream order
        self.timelines: dict[str, list[tuple[int, str, str]]] = {}
        self.recorded: list[Recorded] = []
        self.fail_records = 0  # how many record_ferried calls raise next
        self.writes = 0  # record_ferried calls that succeeded
        self.reads: list[str] = []  # the scheduler's reads, by method
        self.asked: list[set[str]] = []  # the rooms of each timeline read
        self.fail_reads = 0  # how many timeline reads raise next
        # room -> stream positions of its connection and trait changes
        self.changes: dict[str, list[int]] = {}
        # Run once, while the next read of the connections is under way, as
        # a message persisted meanwhile would be.
        self.while_reading_targets: Callable[[], object] | None = None

    def append(self, stream: int, ev: EventBase) -> None:
        self.timelines.setdefault(ev.room_id, []).append((stream, ev.event_id, ev.sender))
        if ev.type in FENCE_EVENT_TYPES and ev.is_state():
            self.changes.setdefault(ev.room_id, []).append(stream)

    async def active_targets(self, ferry: str) -> dict[str, list[ActiveTarget]]:
        self.reads.append("active_targets")
        meanwhile, self.while_reading_targets = self.while_reading_targets, None
        if meanwhile is not None:
            meanwhile()
        return {room: list(targets) for room, targets in self.targets.items()}

    async def cursors(self, room_ids: Collection[str]) -> dict[tuple[str, str], int]:
        self.reads.append("cursors")
        return {key: stream for key, stream in self.cursors_.items() if key[0] in room_ids}

    async def timelines_after(
        self,
        after: Mapping[str, int],
        upto: int,
        limit: int,
        exclude_sender: str,
        fences_after: Mapping[str, int] | None = None,
        exclude_like: str | None = None,
    ) -> TimelineRead:
        self.reads.append("timelines_after")
        self.asked.append(set(after))
        if self.fail_reads:
            self.fail_reads -= 1
            raise RuntimeError("database went away")
        found = sorted(
            (stream, room_id, event_id)
            for room_id, position in after.items()
            for stream, event_id, sender in self.timelines.get(room_id, [])
            if position < stream <= upto and sender != exclude_sender
        )[:limit]
        rows: dict[str, list[TimelineRow]] = {}
        for stream, room_id, event_id in found:
            rows.setdefault(room_id, []).append(TimelineRow(stream, event_id))
        full = len(found) >= limit
        end = found[-1][0] if full else upto
        fences = {
            room_id: tuple(p for p in self.changes.get(room_id, []) if since < p <= end)
            for room_id, since in (fences_after or {}).items()
        }
        return TimelineRead(rows, end, full, {r: ps for r, ps in fences.items() if ps})

    async def record_ferried(self, records: Sequence[FerryRecord]) -> None:
        if self.fail_records:
            self.fail_records -= 1
            raise RuntimeError("database went away")
        self.writes += 1
        for record in records:
            for p in record.pointers:
                self.pointers.setdefault((p.source_event_id, record.target), p.pointer_event_id)
                self.originals[p.pointer_event_id] = SourceEvent(record.room_id, p.source_event_id)
            self.recorded.append(
                Recorded(record.room_id, record.target, list(record.pointers), record.stream)
            )
            key = (record.room_id, record.target)
            self.cursors_[key] = max(self.cursors_.get(key, record.stream), record.stream)

    async def pointer_for(self, source_event_id: str, target_room_id: str) -> str | None:
        return self.pointers.get((source_event_id, target_room_id))

    async def pointer_due(self, room_id: str, target_room_id: str, stream: int, ferry: str) -> bool:
        cursor = self.cursors_.get((room_id, target_room_id))
        active = any(t.room_id == target_room_id for t in self.targets.get(room_id, []))
        return active and (cursor is None or cursor < stream)

    async def original_of(self, pointer_event_id: str) -> SourceEvent | None:
        return self.originals.get(pointer_event_id)


class MemoryEvents:
    """The event source: None for an event not held, as Synapse's
    ``get_event(event_id, allow_none=True)`` gives it (checked against
    Synapse 1.163.2)."""

    def __init__(self) -> None:
        self.events: dict[str, EventBase] = {}

    async def get_event(self, event_id: str) -> EventBase | None:
        return self.events.get(event_id)


class MemorySender:
    """Rooms that keep transaction IDs as Synapse does (a second send with a
    known ID persists nothing), and that refuse a room's whole chain when one
    of its events has a relation Synapse refuses.

    The refusals are those of ``EventCreationHandler._validate_event_relation``
    (synapse/handlers/message.py, Synapse 1.163.2), which only looks at a
    relation with a ``rel_type`` (``synapse.events.relation_from_event``), so a
    plain reply (``m.in_reply_to`` alone) is never refused. For the others:
    the related event must be known (persisted before the chain: Synapse
    checks each event of a chain as it is created, before any is persisted)
    or already the target of some relation, and in the same room; an
    annotation needs a key of at most 500 characters, once per key and
    sender (here every event is the bot's); a thread cannot start from an
    event that itself has a relation. The chain fails whole, as
    ``handle_new_client_event`` persists a batch or nothing."""

    def __init__(self) -> None:
        self.by_txn: dict[tuple[str, str], str] = {}
        self.persisted: dict[str, Outgoing] = {}  # event ID -> what was sent as it
        self.rooms: dict[str, str] = {}  # event ID -> its room
        self.sends: list[list[str]] = []  # transaction IDs of each chain persisted
        self.calls: list[dict[str, list[str]]] = []  # each send call: room -> transaction IDs
        self.lookups = 0  # already_sent calls
        self.refuse: set[str] = set()  # transaction IDs that always fail
        self.fail_sends = 0  # how many sends fail next, whatever they hold

    async def already_sent(
        self, wanted: Collection[tuple[str, str, str | None]]
    ) -> dict[tuple[str, str], str]:
        self.lookups += 1
        pairs = [(room, txn_id) for room, txn_id, _sender in wanted]
        return {key: self.by_txn[key] for key in pairs if key in self.by_txn}

    async def send(self, chains: Mapping[str, Sequence[Outgoing]]) -> dict[str, Exception | None]:
        self.calls.append({room: [i.txn_id for i in items] for room, items in chains.items()})
        if self.fail_sends:
            self.fail_sends -= 1
            return {room: RuntimeError("send failed") for room in chains}
        return {room: self._send_chain(room, items) for room, items in chains.items()}

    def _send_chain(self, room_id: str, items: Sequence[Outgoing]) -> Exception | None:
        for item in items:
            if item.txn_id in self.refuse:
                return RuntimeError(f"refused {item.txn_id}")
            refusal = self._refused_relation(room_id, item.counterpart)
            if refusal is not None:
                return RuntimeError(refusal)
        for item in items:
            if (room_id, item.txn_id) in self.by_txn:
                continue  # deduplicated by transaction ID: nothing new persisted
            event_id = f"$p{len(self.by_txn)}-{item.txn_id}"
            self.by_txn[(room_id, item.txn_id)] = event_id
            self.persisted[event_id] = item
            self.rooms[event_id] = room_id
        self.sends.append([item.txn_id for item in items])
        return None

    def _relation(self, content: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """``relation_from_event``: a relation has a string rel_type and event_id."""
        relates = content.get("m.relates_to")
        if not isinstance(relates, Mapping):
            return None
        if not isinstance(relates.get("rel_type"), str):
            return None
        return relates if isinstance(relates.get("event_id"), str) else None

    def _refused_relation(self, room_id: str, counterpart: Counterpart) -> str | None:
        relation = self._relation(counterpart.content)
        if relation is None:
            return None
        parent = relation["event_id"]
        if parent in self.persisted:
            if self.rooms[parent] != room_id:
                return "Relations must be in the same room"
        elif not any(
            (r := self._relation(sent.counterpart.content)) is not None and r["event_id"] == parent
            for sent in self.persisted.values()
        ):
            return f"Can't send relation to unknown event {parent}"
        if relation["rel_type"] == "m.annotation":
            key = relation.get("key")
            if not isinstance(key, str):
                return "Missing aggregation key"
            if len(key) > 500:
                return "Aggregation key is too long"
            if any(
                sent.counterpart.type == counterpart.type
                and sent.counterpart.content.get("m.relates_to") == relation
                for sent in self.persisted.values()
            ):
                return "Can't send same reaction twice"
        elif (
            relation["rel_type"] == "m.thread"
            and parent in self.persisted
            and self._relation(self.persisted[parent].counterpart.content) is not None
        ):
            return "Cannot start threads from an event with a relation"
        return None


class StandInPreparer:
    """Messages only: a pointer naming the original, its reply or other
    relation (``rel_type``) mapped."""

    def __init__(self, lookup: MemoryFerryStore) -> None:
        self._lookup = lookup
        self.fail: set[str] = set()  # originals whose preparation raises
        # originals whose relation's counterpart is still to come
        self.relation_pending: set[str] = set()
        self.waited: list[bool] = []  # wait_for_relations of each call

    async def prepare(
        self,
        event: EventBase,
        target: str,
        *,
        wait_for_relations: bool = True,
        by_ghost: bool = False,
    ) -> Counterpart | None:
        self.waited.append(wait_for_relations)
        if event.event_id in self.fail:
            raise RuntimeError(f"cannot prepare {event.event_id}")
        if event.event_id in self.relation_pending and wait_for_relations:
            raise RelationPendingError(f"{event.event_id}'s relation is still to come")
        content: dict[str, Any] = {"body": f"pointer to {event.event_id}"}
        relates = event.content.get("m.relates_to") or {}
        replied = relates.get("m.in_reply_to")
        if replied is not None:
            mapped = await counterpart_of(self._lookup, replied["event_id"], target)
            if mapped is None:
                return None
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": mapped}}
        elif "rel_type" in relates:
            mapped = await counterpart_of(self._lookup, relates["event_id"], target)
            if mapped is None:
                return None
            content["m.relates_to"] = {"rel_type": relates["rel_type"], "event_id": mapped}
        return Counterpart("m.room.message", content, CounterpartKind.MESSAGE)


def carried(event: EventBase) -> bool:
    """The kinds the ferry carries (the stand-in preparer handles messages;
    a test's own, the rest), not the bot's."""
    kinds = ("m.room.message", "m.reaction", "m.room.redaction")
    return event.type in kinds and event.sender != BOT


class StandInModeration:
    def __init__(self) -> None:
        self.banned: set[str] = set()

    async def withheld_by(self, event: EventBase, target: str) -> Withheld | None:
        return Withheld.BAN if event.sender in self.banned else None


class StandInGate:
    """Past a fence: what the test says the rooms' current state decides."""

    def __init__(self) -> None:
        self.verdict = PastFence(carry=True)
        self.asked: list[tuple[str, str]] = []

    async def past_fence(self, room_id: str, target: str) -> PastFence:
        self.asked.append((room_id, target))
        return self.verdict


class StandInTraits:
    def __init__(self) -> None:
        self.encrypted: set[str] = set()

    async def traits(self, room_id: str) -> RoomTraits | None:
        return RoomTraits(encrypted=room_id in self.encrypted, public=False)


class Clock:
    """The batch sender's clock, moved by the test."""

    def __init__(self) -> None:
        self.ms = 2000

    def __call__(self) -> int:
        return self.ms


@attrs.define
class FerryRig:
    """A scheduler wired to stand-ins, with one connection SOURCE -> TARGET."""

    store: MemoryFerryStore
    events: MemoryEvents
    sender: MemorySender
    preparer: StandInPreparer
    moderation: StandInModeration
    traits: StandInTraits
    gate: StandInGate
    scheduler: FerryScheduler = attrs.field(init=False)
    stream: int = 0
    clock: Clock = attrs.field(factory=Clock)
    batches: BatchSender = attrs.field(init=False)
    # Which directions this process carries (all by default).
    owns: Callable[[str, str], bool] = lambda _r, _t: True
    # Whether the scheduler asked for a pass since this was last cleared.
    woken: bool = False

    @classmethod
    def build(cls, since: int = 0, owns: Callable[[str, str], bool] | None = None) -> FerryRig:
        """``owns``: which directions this process carries (all by default)."""
        store, events, sender = MemoryFerryStore(), MemoryEvents(), MemorySender()
        preparer, moderation, traits = StandInPreparer(store), StandInModeration(), StandInTraits()
        store.targets[SOURCE] = [ActiveTarget(TARGET, since)]
        rig = cls(store, events, sender, preparer, moderation, traits, StandInGate(), since)
        if owns is not None:
            rig.owns = owns
        rig.restart()
        return rig

    def restart(self) -> None:
        """A fresh ferry process: nothing in memory, the same store and
        homeserver."""
        cursors = DirectionCursors()
        crossing = Crossing(carried, self.traits, self.moderation, self.gate)
        self.batches = BatchSender(
            self.events,
            self.preparer,
            crossing,
            self.sender,
            self.store,
            cursors,
            "hs1",
            clock_ms=self.clock,
        )
        self.scheduler = FerryScheduler(
            self.store,
            crossing,
            self.batches,
            cursors,
            BOT,
            "hs1",
            owns=lambda room_id, target: self.owns(room_id, target),
            on_work=self._wake,
        )

    def _wake(self) -> None:
        self.woken = True

    async def run_as_the_runner_does(self) -> None:
        """Passes as FerryRunner runs them: again while there is more to
        read or something asked for a pass during the last one."""
        while True:
            self.woken = False
            outcome = await self.scheduler.run_pass(self.position)
            if outcome is not PassOutcome.MORE and not self.woken:
                return

    def persist(self, *evs: EventBase) -> list[int]:
        """Append events to their rooms' timelines and tell the scheduler, as
        the feed does; their stream positions."""
        streams = []
        for ev in evs:
            self.stream += 1
            self.events.events[ev.event_id] = ev
            self.store.append(self.stream, ev)
            streams.append(self.stream)
        self.scheduler.events_in({ev.room_id for ev in evs})
        return streams

    def position(self) -> int:
        """The stream position up to which everything is persisted."""
        return self.stream

    def pointer(self, event_id: str, target: str = TARGET) -> str | None:
        return self.store.pointers.get((event_id, target))

    @property
    def cursor(self) -> int | None:
        return self.store.cursors_.get((SOURCE, TARGET))
