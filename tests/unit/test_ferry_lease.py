"""Ferry leases against an in-memory lease table: who may send for a
connection, the wait for the previous owner, and a scheduler that takes a
connection over from another process sending nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import attrs
import pytest

from synapse_room_connect.ferry.batch import BatchSender, transaction_id
from synapse_room_connect.ferry.crossing import Crossing
from synapse_room_connect.ferry.cursors import DirectionCursors
from synapse_room_connect.ferry.lease import (
    ASK_AGAIN_MS,
    LEASE_MS,
    RENEW_BELOW_MS,
    FerryLeases,
    LeaseLostError,
    lease_owner,
)
from synapse_room_connect.ferry.scheduler import FerryScheduler, PassOutcome
from synapse_room_connect.store import LeaseRow

from .ferry_stand_ins import BOT, SOURCE, TARGET, Clock, FerryRig, carried, event

DIRECTION = (SOURCE, TARGET)
BACK = (TARGET, SOURCE)


@attrs.define
class MemoryLeaseStore:
    """The lease table as store_leases.py's SQL keeps it, on one clock."""

    clock: Clock
    # key -> (owner, epoch, expires)
    rows: dict[str, tuple[str, int, int]] = attrs.field(factory=dict)
    claims: int = 0

    async def claim_leases(
        self, owner: str, keys: Collection[str], lease_ms: int
    ) -> list[LeaseRow]:
        self.claims += 1
        now = self.clock()
        for key in keys:
            held = self.rows.get(key)
            if held is None:
                self.rows[key] = (owner, 1, now + lease_ms)
            elif held[0] == owner:
                self.rows[key] = (owner, held[1], now + lease_ms)
            elif held[2] <= now:
                self.rows[key] = (owner, held[1] + 1, now + lease_ms)
        return [LeaseRow(k, *self.rows[k][:2], self.rows[k][2] - now) for k in keys]

    async def release_leases(self, owner: str, keys: Collection[str]) -> None:
        for key in keys:
            held = self.rows.get(key)
            if held is not None and held[0] == owner:
                self.rows[key] = (owner, held[1], 0)


async def _no_sleep(_seconds: float) -> None:
    return None


def leases(store: MemoryLeaseStore, name: str = "ferry1") -> FerryLeases:
    return FerryLeases(store, lease_owner(name), clock_ms=store.clock, sleep=_no_sleep)


def admit(process: FerryLeases, *directions: tuple[str, str]) -> tuple[set[str], set[str]]:
    """(held, regained) as the sources of the directions admitted."""
    admission = asyncio.run(process.admit(directions))
    return {d[0] for d in admission.held}, {d[0] for d in admission.regained}


async def send(process: FerryLeases, *directions: tuple[str, str]) -> None:
    async with process.sending(directions):
        pass


def test_the_next_owner_waits_out_the_lease_and_then_reads_the_connection_again() -> None:
    store = MemoryLeaseStore(Clock())
    old, new = leases(store, "ferry1"), leases(store, "ferry3")

    # Nobody held it before: what was read before the claim is current.
    assert admit(old, DIRECTION) == ({SOURCE}, set())
    assert admit(new, DIRECTION) == (set(), set())
    # Both directions of a connection are one lease.
    assert admit(new, BACK) == (set(), set())
    store.clock.ms += LEASE_MS - 1
    store.clock.ms += ASK_AGAIN_MS
    assert admit(new, BACK) == ({TARGET}, {TARGET})
    assert admit(old, DIRECTION) == (set(), set())


def test_a_lease_released_at_shutdown_passes_at_once() -> None:
    store = MemoryLeaseStore(Clock())
    old, new = leases(store, "ferry1"), leases(store, "ferry3")
    admit(old, DIRECTION)
    assert admit(new, DIRECTION) == (set(), set())

    asyncio.run(old.close())
    store.clock.ms += ASK_AGAIN_MS
    assert admit(new, DIRECTION) == ({SOURCE}, {SOURCE})
    # Closed: it neither sends nor takes anything again.
    with pytest.raises(LeaseLostError):
        asyncio.run(send(old, DIRECTION))
    assert admit(old, DIRECTION) == (set(), set())


def test_a_restarted_process_waits_out_its_earlier_run_s_lease() -> None:
    """After kill -9, the earlier run's last persist may still be under way."""
    store = MemoryLeaseStore(Clock())
    admit(leases(store, "ferry2"), DIRECTION)
    restarted = leases(store, "ferry2")

    assert admit(restarted, DIRECTION) == (set(), set())
    store.clock.ms += LEASE_MS
    assert admit(restarted, DIRECTION) == ({SOURCE}, {SOURCE})


def test_a_lapsed_lease_nobody_took_is_taken_back_without_reading_again() -> None:
    store = MemoryLeaseStore(Clock())
    process = leases(store)
    admit(process, DIRECTION)
    store.clock.ms += 10 * LEASE_MS

    assert admit(process, DIRECTION) == ({SOURCE}, set())


def test_a_lease_another_process_held_in_between_is_read_again() -> None:
    store = MemoryLeaseStore(Clock())
    first, other = leases(store, "ferry1"), leases(store, "ferry2")
    admit(first, DIRECTION)
    store.clock.ms += LEASE_MS
    assert admit(other, DIRECTION) == ({SOURCE}, {SOURCE})
    store.clock.ms += LEASE_MS

    assert admit(first, DIRECTION) == ({SOURCE}, {SOURCE})


def test_a_send_renews_only_when_little_is_left_and_only_its_own_leases() -> None:
    store = MemoryLeaseStore(Clock())
    process, other = leases(store, "ferry1"), leases(store, "ferry3")
    idle = ("!idle:hs1", TARGET)
    admit(process, DIRECTION, idle)
    claims = store.claims

    asyncio.run(send(process, DIRECTION))
    assert store.claims == claims  # plenty left: no write
    store.clock.ms += LEASE_MS - RENEW_BELOW_MS + 1
    asyncio.run(send(process, DIRECTION))
    assert store.claims == claims + 1
    # A lease this process no longer uses lapses: the next owner need not
    # wait for this process to stop.
    store.clock.ms += RENEW_BELOW_MS
    assert admit(other, idle) == ({"!idle:hs1"}, {"!idle:hs1"})
    assert admit(other, DIRECTION) == (set(), set())


def test_a_send_whose_lease_went_elsewhere_raises_and_sends_nothing() -> None:
    store = MemoryLeaseStore(Clock())
    process, other = leases(store, "ferry1"), leases(store, "ferry2")
    admit(process, DIRECTION)
    store.clock.ms += LEASE_MS
    admit(other, DIRECTION)

    with pytest.raises(LeaseLostError):
        asyncio.run(send(process, DIRECTION))
    store.clock.ms += LEASE_MS
    # Taken back once free, and read again: the other sent meanwhile.
    with pytest.raises(LeaseLostError):
        asyncio.run(send(process, DIRECTION))
    assert admit(process, DIRECTION) == ({SOURCE}, {SOURCE})


def test_a_process_waiting_for_a_lease_asks_again_only_after_a_delay() -> None:
    store = MemoryLeaseStore(Clock())
    admit(leases(store, "ferry1"), DIRECTION)
    waiting = leases(store, "ferry2")
    admit(waiting, DIRECTION)
    claims = store.claims

    admit(waiting, DIRECTION)
    assert store.claims == claims
    store.clock.ms += ASK_AGAIN_MS
    admit(waiting, DIRECTION)
    assert store.claims == claims + 1


def scheduler_on(rig: FerryRig, process: FerryLeases) -> FerryScheduler:
    """A process of its own over the rig's database and homeserver."""
    cursors = DirectionCursors()
    crossing = Crossing(carried, rig.traits, rig.moderation, rig.gate)
    batches = BatchSender(
        rig.events,
        rig.preparer,
        crossing,
        rig.sender,
        rig.store,
        cursors,
        "hs1",
        rig.clock,
        leases=process,
    )
    return FerryScheduler(rig.store, crossing, batches, cursors, BOT, "hs1", leases=process)


def run(scheduler: FerryScheduler, rig: FerryRig) -> PassOutcome:
    return asyncio.run(scheduler.run_pass(rig.position))


def sent_txns(rig: FerryRig) -> list[str]:
    return [txn for call in rig.sender.calls for txns in call.values() for txn in txns]


def test_two_processes_that_both_take_a_connection_for_their_own_never_both_send() -> None:
    """An old-list and a new-list process during a rolling restart."""
    rig = FerryRig.build()
    store = MemoryLeaseStore(rig.clock)
    old_leases, new_leases = leases(store, "ferry1"), leases(store, "ferry3")
    old, new = scheduler_on(rig, old_leases), scheduler_on(rig, new_leases)

    rig.persist(event("$m1"))
    new.events_in({SOURCE})
    assert run(old, rig) is PassOutcome.IDLE
    # The new owner waits, and says so, rather than sending.
    assert run(new, rig) is PassOutcome.RETRY_LATER
    assert sent_txns(rig) == [transaction_id("$m1", TARGET)]

    rig.persist(event("$m2"))
    new.events_in({SOURCE})
    assert run(old, rig) is PassOutcome.IDLE
    asyncio.run(old_leases.close())  # the old process restarts
    rig.clock.ms += ASK_AGAIN_MS
    rig.persist(event("$m3"))
    new.events_in({SOURCE})
    assert run(new, rig) is PassOutcome.IDLE
    # From the cursor the old owner recorded: nothing twice.
    assert sent_txns(rig) == [transaction_id(f"$m{n}", TARGET) for n in (1, 2, 3)]
    assert rig.cursor == 3


def test_a_process_taking_a_connection_back_reads_what_another_sent_meanwhile() -> None:
    rig = FerryRig.build()
    store = MemoryLeaseStore(rig.clock)
    first = scheduler_on(rig, leases(store, "ferry1"))
    second = scheduler_on(rig, leases(store, "ferry2"))
    rig.persist(event("$m1"))
    assert run(first, rig) is PassOutcome.IDLE

    rig.clock.ms += LEASE_MS  # first is idle; its lease lapses
    rig.persist(event("$m2"))
    second.events_in({SOURCE})
    assert run(second, rig) is PassOutcome.IDLE

    rig.clock.ms += LEASE_MS
    rig.persist(event("$m3"))
    first.events_in({SOURCE})
    assert run(first, rig) is PassOutcome.IDLE
    # $m2 is not built into another chain: first read second's cursor.
    assert sent_txns(rig) == [transaction_id(f"$m{n}", TARGET) for n in (1, 2, 3)]
