"""The ferry past a connection change that reconciliation has not processed
yet: a message said after a revocation must not cross, whoever reads first."""

from __future__ import annotations

import asyncio

from synapse.events import EventBase

from synapse_room_connect.constants import CONNECTION_EVENT_TYPE
from synapse_room_connect.ferry.crossing import (
    HOLD,
    CrossingVerdict,
    Passage,
    PastFence,
    first_fence,
)
from synapse_room_connect.ferry.scheduler import PassOutcome
from synapse_room_connect.store import TimelineRow

from .ferry_stand_ins import ALICE, SOURCE, TARGET, FerryRig, event


def run(rig: FerryRig) -> PassOutcome:
    return asyncio.run(rig.scheduler.run_pass(rig.position))


def change(event_id: str, room_id: str, other: str, content: dict[str, object]) -> EventBase:
    return event(
        event_id,
        type=CONNECTION_EVENT_TYPE,
        room_id=room_id,
        sender=ALICE,
        state_key=other,
        content=content,
    )


def revocation(event_id: str, room_id: str = TARGET, other: str = SOURCE) -> EventBase:
    return change(event_id, room_id, other, {})


def test_a_message_after_an_unreconciled_revocation_in_the_target_stays() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"))
    run(rig)
    # B revokes; A's next message is read before reconciliation has run.
    rig.persist(revocation("$revoke"), event("$m2"))
    rig.gate.verdict = HOLD

    run(rig)
    assert rig.pointer("$m1") is not None
    assert rig.pointer("$m2") is None
    assert rig.gate.asked == [(SOURCE, TARGET)]
    # Reconciliation then ends the direction: $m2 never crosses.
    rig.store.targets.clear()
    rig.scheduler.connections_changed()
    run(rig)
    assert rig.pointer("$m2") is None


def test_messages_before_the_revocation_still_cross_in_the_same_read() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), revocation("$revoke", SOURCE, TARGET), event("$m2"))
    rig.gate.verdict = HOLD

    run(rig)
    assert rig.pointer("$m1") is not None
    assert rig.pointer("$m2") is None
    # The cursor stops before the change, so nothing after it is passed over.
    assert rig.cursor == 1


def test_a_change_that_leaves_the_connection_active_holds_nothing() -> None:
    rig = FerryRig.build()
    # Another connection of the source room changed.
    rig.persist(change("$other", SOURCE, "!third:hs1", {"via": ["hs1"]}), event("$m1"))
    rig.gate.verdict = PastFence(carry=True, resume_after=0)

    run(rig)
    assert rig.pointer("$m1") is not None
    assert rig.cursor == 2


def test_revoked_and_consented_again_skips_what_was_said_in_between() -> None:
    rig = FerryRig.build()
    streams = rig.persist(
        event("$m1"),
        revocation("$revoke"),
        event("$between"),
        change("$again", TARGET, SOURCE, {"via": ["hs1"]}),
        event("$after"),
    )
    rig.gate.verdict = PastFence(carry=True, resume_after=streams[3])

    run(rig)
    assert rig.pointer("$m1") is not None
    assert rig.pointer("$between") is None
    assert rig.pointer("$after") is not None
    assert rig.cursor == streams[4]


def test_no_change_no_question() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), event("$m2"))
    run(rig)
    assert rig.gate.asked == []


def test_first_fence_looks_at_both_rooms_after_the_cursor_only() -> None:
    fences = {SOURCE: (3, 9), TARGET: (5,), "!elsewhere:hs1": (4,)}
    assert first_fence(fences, (SOURCE, TARGET), 3, 10) == 5
    assert first_fence(fences, (SOURCE, TARGET), 5, 8) is None
    assert first_fence(fences, (SOURCE, TARGET), 0, 10) == 3


def test_a_passage_never_skips_beyond_what_was_read() -> None:
    rows = [TimelineRow(s, f"$e{s}") for s in (1, 2, 4, 6)]

    def split(past: PastFence) -> tuple[list[TimelineRow], int | None, list[TimelineRow]]:
        passage = Passage(fence=3, past=past, upto=6)
        crossing = [row for row in rows if passage.at(row.stream) is None]
        before = [row for row in crossing if row.stream < 3]
        return before, passage.skip_to, [row for row in crossing if row.stream > 3]

    held = split(HOLD)
    assert held == (rows[:2], None, [])
    assert Passage(fence=3, past=HOLD, upto=6).at(4) is CrossingVerdict.HOLD
    resumed = split(PastFence(carry=True, resume_after=5))
    assert (resumed[1], resumed[2]) == (5, rows[3:])
    capped = split(PastFence(carry=True, resume_after=50))
    assert (capped[1], capped[2]) == (6, [])
