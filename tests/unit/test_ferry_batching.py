"""The ferry's scheduler and batch against in-memory stand-ins: what is sent
together, when a batch is sent early, retries, cursors and exactly-once."""

from __future__ import annotations

import asyncio

from synapse_room_connect.ferry.attempts import MAX_ATTEMPTS
from synapse_room_connect.ferry.batch import MAX_BATCH, transaction_id
from synapse_room_connect.ferry.scheduler import BATCH_SIZE, PassOutcome
from synapse_room_connect.store import ActiveTarget

from .ferry_stand_ins import BOT, SOURCE, TARGET, FerryRig, event, in_thread, reply


def run(rig: FerryRig) -> PassOutcome:
    return asyncio.run(rig.scheduler.run_pass(rig.position))


def txn(event_id: str) -> str:
    return transaction_id(event_id, TARGET)


def test_several_events_to_one_target_become_one_send() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), event("$m2"), event("$m3"))

    # Done: a pass asks for another only when it left something unread.
    assert run(rig) is PassOutcome.IDLE
    assert rig.sender.sends == [[txn("$m1"), txn("$m2"), txn("$m3")]]
    assert [r.stream for r in rig.store.recorded] == [3]
    assert all(rig.pointer(e) is not None for e in ("$m1", "$m2", "$m3"))
    assert rig.cursor == 3
    # Nothing new: nothing read again, nothing sent again.
    assert run(rig) is PassOutcome.IDLE
    assert len(rig.sender.sends) == 1
    assert rig.store.reads.count("timelines_after") == 1


def test_a_full_batch_is_sent_before_the_next_one_fills() -> None:
    rig = FerryRig.build()
    rig.persist(*(event(f"$m{n}") for n in range(BATCH_SIZE + 20)))

    assert run(rig) is PassOutcome.MORE  # a full read: more to read
    assert [len(s) for s in rig.sender.sends] == [MAX_BATCH] * (BATCH_SIZE // MAX_BATCH)
    assert rig.cursor == BATCH_SIZE
    assert run(rig) is PassOutcome.IDLE
    assert [len(s) for s in rig.sender.sends][-1] == 20
    assert rig.cursor == BATCH_SIZE + 20
    assert run(rig) is PassOutcome.IDLE


def test_a_relation_to_a_pointer_still_in_the_batch_sends_the_batch_first() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), in_thread("$r2", root="$m1"), event("$m3"))

    assert run(rig) is PassOutcome.IDLE
    # The stand-in sender, like Synapse, refuses a relation (a thread, not a
    # plain reply) to an event it has not persisted: the thread message could
    # only go once $m1's pointer had.
    assert rig.sender.sends == [[txn("$m1")], [txn("$r2"), txn("$m3")]]
    assert [r.stream for r in rig.store.recorded] == [1, 3]
    assert rig.pointer("$r2") is not None


def test_a_reply_to_an_already_sent_pointer_stays_in_the_batch() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"))
    run(rig)
    rig.persist(event("$m2"), reply("$r3", to="$m1"))

    run(rig)
    assert rig.sender.sends[1:] == [[txn("$m2"), txn("$r3")]]


def test_a_transient_failure_retries_later_and_loses_nothing() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), event("$m2"))
    rig.sender.fail_sends = 2  # the batch, then the first event alone

    assert run(rig) is PassOutcome.RETRY_LATER
    assert rig.cursor is None
    assert rig.pointer("$m1") is None

    assert run(rig) is PassOutcome.IDLE
    assert rig.sender.sends == [[txn("$m1"), txn("$m2")]]
    assert rig.cursor == 2


def test_one_bad_event_is_retried_then_given_up_and_holds_back_no_other() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), event("$bad"), event("$m3"))
    rig.sender.refuse.add(txn("$bad"))

    for attempt in range(1, MAX_ATTEMPTS):
        assert run(rig) is PassOutcome.RETRY_LATER, attempt
        # Everything before the bad event went, one by one; the cursor waits
        # on it so that a transient failure would not lose it.
        assert rig.cursor == 1
        assert rig.pointer("$m1") is not None
        assert rig.pointer("$bad") is None

    assert run(rig) is PassOutcome.IDLE  # the last attempt: given up
    assert rig.pointer("$bad") is None
    assert rig.pointer("$m3") is not None
    assert rig.cursor == 3
    assert run(rig) is PassOutcome.IDLE
    assert sum(s.count(txn("$m1")) for s in rig.sender.sends) == 1


def test_a_failing_preparation_is_given_up_after_max_attempts() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), event("$bad"), event("$m3"))
    rig.preparer.fail.add("$bad")

    outcomes = [run(rig) for _ in range(MAX_ATTEMPTS)]
    assert outcomes == [PassOutcome.RETRY_LATER] * (MAX_ATTEMPTS - 1) + [PassOutcome.IDLE]
    # What came before the failure was sent before retrying, and only once.
    assert rig.sender.sends[0] == [txn("$m1")]
    assert rig.sender.sends[-1] == [txn("$m3")]
    assert rig.pointer("$bad") is None
    assert rig.cursor == 3


def test_the_cursor_is_recorded_with_each_pointer_and_covers_skipped_events() -> None:
    rig = FerryRig.build()
    rig.moderation.banned.add("@spammer:hs2")
    rig.persist(
        event("$m1"),
        event("$other", type="org.example.custom"),
        event("$banned", sender="@spammer:hs2"),
        event("$own", sender=BOT),  # the bot's own events are never read
    )

    assert run(rig) is PassOutcome.IDLE
    # One write: the pointer with the cursor over what was looked at after it.
    assert [(r.pointers[0].source_event_id, r.stream) for r in rig.store.recorded] == [("$m1", 3)]
    assert rig.cursor == 3
    assert rig.sender.sends == [[txn("$m1")]]


def test_only_skipped_events_move_the_cursor_without_a_send() -> None:
    rig = FerryRig.build()
    rig.persist(event("$a", type="org.example.custom"), event("$b", type="org.example.custom"))

    assert run(rig) is PassOutcome.IDLE
    assert rig.cursor == 2
    assert rig.sender.sends == []


def test_an_encrypted_room_moves_the_cursor_and_sends_nothing() -> None:
    rig = FerryRig.build()
    rig.traits.encrypted.add(TARGET)
    rig.persist(event("$m1"), event("$m2"))

    run(rig)
    assert rig.sender.sends == []
    assert rig.cursor == 2


def test_a_connection_active_again_starts_from_its_new_consent() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"))
    run(rig)
    # Revoked, then active again at position 3: $m2 was said in between.
    rig.persist(event("$m2"), event("$consent", type="org.example.custom"), event("$m4"))
    rig.store.targets[SOURCE] = [ActiveTarget(TARGET, 3)]
    rig.scheduler.connections_changed()

    run(rig)
    assert rig.pointer("$m2") is None
    assert rig.pointer("$m4") is not None


def test_a_revocation_mid_batch_stops_before_the_next_event() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), event("$m2"), event("$m3"))
    prepare = rig.preparer.prepare

    async def revoking_after_first(ev, target, **kwargs):  # type: ignore[no-untyped-def]
        if ev.event_id == "$m1":
            rig.store.targets.clear()
            rig.scheduler.connections_changed()
        return await prepare(ev, target, **kwargs)

    rig.preparer.prepare = revoking_after_first  # type: ignore[method-assign]

    assert run(rig) is PassOutcome.MORE  # re-read the connections first
    assert rig.sender.sends == [[txn("$m1")]]
    assert run(rig) is PassOutcome.IDLE
    assert rig.pointer("$m2") is None


def test_a_send_lost_before_its_record_is_not_sent_again_after_a_restart() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"))
    rig.store.fail_records = 1  # sent, then the process stops before recording

    assert run(rig) is PassOutcome.RETRY_LATER
    assert len(rig.sender.sends) == 1
    assert rig.pointer("$m1") is None

    # A fresh process: nothing in memory, the same store and homeserver.
    rig.restart()

    assert run(rig) is PassOutcome.IDLE
    assert len(rig.sender.sends) == 1  # answered from the transaction ID
    assert rig.pointer("$m1") == rig.sender.by_txn[(TARGET, txn("$m1"))]
    assert rig.cursor == 1


def test_a_message_that_arrives_while_the_connections_reload_is_not_left_unread() -> None:
    # A connection change elsewhere (a revocation in another room, say)
    # makes the next pass reload the connections; a message persisted
    # meanwhile marks its room for a pass. That pass must read up to it: the
    # mark is gone once taken, and nothing else would bring the room back
    # until its next message.
    rig = FerryRig.build()
    rig.persist(event("$m1"))
    asyncio.run(rig.run_as_the_runner_does())
    rig.scheduler.connections_changed()
    rig.store.while_reading_targets = lambda: rig.persist(event("$m2"))

    asyncio.run(rig.run_as_the_runner_does())

    assert rig.pointer("$m2") is not None
    assert rig.cursor == 2
