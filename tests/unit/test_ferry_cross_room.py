"""The ferry across many connections, against in-memory stand-ins: pointers
for different target rooms are sent in one call and recorded in one write,
a failing room holds back no other, and what a pass reads does not grow with
the number of connections."""

from __future__ import annotations

import asyncio

import pytest
from synapse.events import EventBase

from synapse_room_connect.ferry.attempts import MAX_ATTEMPTS
from synapse_room_connect.ferry.batch import MAX_BATCH, transaction_id
from synapse_room_connect.ferry.interfaces import Withheld
from synapse_room_connect.ferry.scheduler import PassOutcome
from synapse_room_connect.store import ActiveTarget

from .ferry_stand_ins import FerryRig, event


def source(n: int) -> str:
    return f"!source{n}:hs1"


def target(n: int) -> str:
    return f"!target{n}:hs1"


def rig_with(connections: int) -> FerryRig:
    """``connections`` directions source<n> -> target<n>, all started up."""
    rig = FerryRig.build()
    rig.store.targets = {source(n): [ActiveTarget(target(n), 0)] for n in range(connections)}
    run(rig)  # the first pass loads them all
    rig.store.reads.clear()
    rig.store.asked.clear()
    return rig


def run(rig: FerryRig) -> PassOutcome:
    return asyncio.run(rig.scheduler.run_pass(rig.position))


def burst(rig: FerryRig, rooms: range, prefix: str = "$m") -> None:
    rig.persist(*(event(f"{prefix}{n}", room_id=source(n)) for n in rooms))


def test_pointers_into_different_rooms_go_in_one_send_and_one_write() -> None:
    rig = rig_with(3)
    burst(rig, range(3))

    assert run(rig) is PassOutcome.IDLE
    assert rig.sender.calls == [
        {target(n): [transaction_id(f"$m{n}", target(n))] for n in range(3)}
    ]
    assert rig.store.writes == 1
    assert rig.store.reads == ["timelines_after"]
    for n in range(3):
        assert rig.pointer(f"$m{n}", target(n)) is not None
        assert rig.store.cursors_[(source(n), target(n))] == n + 1


def test_what_a_pass_reads_and_writes_does_not_grow_with_the_connections() -> None:
    counts = []
    for connections in (10, 1000):
        rig = rig_with(connections)
        burst(rig, range(5), "$first")
        run(rig)  # after a start, a look-up before sending too
        rig.store.reads.clear()
        lookups, writes = rig.sender.lookups, rig.store.writes
        burst(rig, range(5))
        run(rig)
        counts.append((rig.store.reads, rig.sender.lookups - lookups, rig.store.writes - writes))
    # One timeline read, one read-back of what Synapse stored, one write:
    # for 5 pointers, whether 10 or 1000 connections exist.
    assert counts[0] == counts[1] == (["timelines_after"], 1, 1)


def test_a_room_that_refuses_its_chain_holds_back_no_other() -> None:
    rig = rig_with(3)
    rig.sender.refuse.add(transaction_id("$m1", target(1)))
    burst(rig, range(3))

    assert run(rig) is PassOutcome.RETRY_LATER
    assert rig.pointer("$m0", target(0)) is not None
    assert rig.pointer("$m2", target(2)) is not None
    assert rig.pointer("$m1", target(1)) is None
    assert (source(1), target(1)) not in rig.store.cursors_
    # Only the failing room is read again.
    rig.store.reads.clear()
    rig.sender.refuse.clear()
    assert run(rig) is PassOutcome.IDLE
    assert rig.pointer("$m1", target(1)) is not None
    assert rig.store.reads == ["timelines_after"]
    assert (
        sum(
            call.get(target(0), []).count(transaction_id("$m0", target(0)))
            for call in rig.sender.calls
        )
        == 1
    )


def test_two_rooms_into_one_target_keep_each_connection_in_order() -> None:
    rig = FerryRig.build()
    shared = target(0)
    rig.store.targets = {source(0): [ActiveTarget(shared, 0)], source(1): [ActiveTarget(shared, 0)]}
    run(rig)
    rig.persist(
        event("$a1", room_id=source(0)),
        event("$b1", room_id=source(1)),
        event("$a2", room_id=source(0)),
    )

    run(rig)
    (call,) = rig.sender.calls
    sent = call[shared]
    assert sent.index(transaction_id("$a1", shared)) < sent.index(transaction_id("$a2", shared))
    assert len(sent) == 3
    assert rig.store.writes == 1  # both directions' records and cursors


def test_a_pointer_synapse_deduplicated_is_recorded_with_the_stored_event() -> None:
    rig = rig_with(1)
    burst(rig, range(1))
    run(rig)  # the direction is now known to be fully recorded: no look-up before sending
    # Another process persisted $later's pointer (same transaction ID), unrecorded here.
    txn = transaction_id("$later", target(0))
    rig.sender.by_txn[(target(0), txn)] = "$stored"
    rig.persist(event("$later", room_id=source(0)))

    assert run(rig) is PassOutcome.IDLE
    # Synapse persisted nothing new for it; the pointer is the one it holds.
    assert rig.pointer("$later", target(0)) == "$stored"


def test_a_new_connection_reads_its_own_room_only() -> None:
    rig = rig_with(50)
    rig.store.targets[source(50)] = [ActiveTarget(target(50), 0)]
    rig.persist(event("$old", room_id=source(50)))
    rig.scheduler.connections_changed()

    run(rig)
    assert rig.store.reads == ["active_targets", "cursors", "timelines_after"]
    assert rig.pointer("$old", target(50)) is not None


def test_a_failed_pass_reads_again_only_its_own_rooms() -> None:
    rig = rig_with(20)
    burst(rig, range(2))
    rig.store.fail_reads = 1

    with pytest.raises(RuntimeError):
        run(rig)
    assert run(rig) is PassOutcome.IDLE
    # The retry reads the two rooms that had news, not all twenty.
    assert rig.store.asked == [{source(0), source(1)}] * 2
    for n in range(2):
        assert rig.pointer(f"$m{n}", target(n)) is not None


def test_a_failed_write_sends_nothing_twice_and_loses_nothing() -> None:
    rig = rig_with(3)
    burst(rig, range(3))
    rig.store.fail_records = 1  # the joint write, after the sends went through

    assert run(rig) is PassOutcome.RETRY_LATER
    assert rig.store.pointers == {}
    # Read again: Synapse's transaction IDs answer, nothing is sent again.
    assert run(rig) is PassOutcome.IDLE
    for n in range(3):
        txn = transaction_id(f"$m{n}", target(n))
        assert sum(call.get(target(n), []).count(txn) for call in rig.sender.calls) == 1
        assert rig.pointer(f"$m{n}", target(n)) == rig.sender.by_txn[(target(n), txn)]


def test_a_restart_reads_every_cursor_in_one_query() -> None:
    rig = rig_with(30)
    burst(rig, range(30))
    run(rig)
    rig.restart()
    rig.store.reads.clear()

    assert run(rig) is PassOutcome.IDLE
    assert rig.store.reads == ["active_targets", "cursors", "timelines_after"]
    assert len(rig.sender.calls) == 1  # nothing sent again


def test_a_connection_that_comes_back_is_read_from_the_store_and_looked_up() -> None:
    rig = rig_with(2)
    burst(rig, range(2))
    run(rig)
    # Carried elsewhere for a while (another ferry process, or revoked and
    # granted again): that process moved the cursor and sent $away's pointer.
    moved = rig.store.targets.pop(source(0))
    rig.scheduler.connections_changed()
    run(rig)
    rig.persist(event("$away", room_id=source(0)))
    txn = transaction_id("$away", target(0))
    rig.sender.by_txn[(target(0), txn)] = "$sent-elsewhere"
    rig.store.cursors_[(source(0), target(0))] = rig.stream - 1  # not yet recorded there
    rig.store.targets[source(0)] = moved
    rig.scheduler.connections_changed()

    assert run(rig) is PassOutcome.IDLE
    assert all(txn not in call.get(target(0), []) for call in rig.sender.calls)
    assert rig.pointer("$away", target(0)) == "$sent-elsewhere"


def test_a_good_event_is_not_given_up_for_another_connection_s_bad_one() -> None:
    """Two directions into one target share its chain; the one that always
    fails must not use up the attempts of the other's lone event."""
    rig = FerryRig.build()
    shared = target(0)
    rig.store.targets = {source(0): [ActiveTarget(shared, 0)], source(1): [ActiveTarget(shared, 0)]}
    run(rig)
    rig.sender.refuse.add(transaction_id("$bad", shared))
    rig.persist(event("$good", room_id=source(0)), event("$bad", room_id=source(1)))

    for _ in range(MAX_ATTEMPTS + 1):
        run(rig)
    assert rig.pointer("$good", shared) is not None
    assert rig.pointer("$bad", shared) is None


def test_a_pass_that_raises_after_a_full_batch_went_out_resends_nothing() -> None:
    """A backlog's first MAX_BATCH pointers are sent and recorded mid-pass;
    the pass then raises. The next pass reads the stored cursor again and
    looks up what was sent, instead of sending those pointers a second time
    (which Synapse would deduplicate into a hole in the room's chain)."""
    rig = rig_with(1)
    rig.persist(*(event(f"$m{n}", room_id=source(0)) for n in range(MAX_BATCH + 5)))
    real = rig.moderation.withheld_by
    breaking = f"$m{MAX_BATCH + 2}"

    async def failing(ev: EventBase, target_room: str) -> Withheld | None:
        if ev.event_id == breaking:
            raise RuntimeError("database went away")
        return await real(ev, target_room)

    rig.moderation.withheld_by = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        run(rig)
    assert rig.pointer("$m0", target(0)) is not None  # the first batch went out
    rig.moderation.withheld_by = real  # type: ignore[method-assign]
    run(rig)

    for n in range(MAX_BATCH + 5):
        assert rig.pointer(f"$m{n}", target(0)) is not None
    sent = [txn for chain in rig.sender.sends for txn in chain]
    assert sent.count(transaction_id("$m0", target(0))) == 1
