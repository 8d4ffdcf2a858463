"""An event whose relation's counterpart another direction is still to send
(a mesh of three rooms) waits for it, within bounds, and holds back what
follows it in its own direction."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from synapse_room_connect.ferry.held import RELATION_WAIT_MS
from synapse_room_connect.ferry.scheduler import PassOutcome

from .ferry_stand_ins import ALICE, SOURCE, TARGET, FerryRig, event


def run(rig: FerryRig) -> PassOutcome:
    return asyncio.run(rig.scheduler.run_pass(rig.position))


def held_gauge() -> float | None:
    return REGISTRY.get_sample_value(
        "synapse_room_connect_ferry_held_events", {"server_name": "hs1"}
    )


def failures_counted() -> float:
    """Failed attempts the ferry has counted towards giving up, as its metric
    shows them (one process-wide registry, so compare before and after)."""
    value = REGISTRY.get_sample_value(
        "synapse_room_connect_ferry_failures_total", {"server_name": "hs1"}
    )
    return value or 0.0


def test_an_event_whose_relation_is_still_to_come_waits_and_holds_back_what_follows() -> None:
    rig = FerryRig.build()
    rig.persist(event("$m1"), event("$reaction"), event("$m3"))
    rig.preparer.relation_pending.add("$reaction")

    assert run(rig) is PassOutcome.RETRY_LATER
    # What came before went; the held event and everything after it wait.
    assert rig.pointer("$m1") is not None
    assert rig.pointer("$reaction") is None
    assert rig.pointer("$m3") is None
    assert rig.cursor == 1

    # The other direction carried the related pointer meanwhile.
    rig.preparer.relation_pending.clear()
    assert run(rig) is PassOutcome.IDLE
    assert rig.pointer("$reaction") is not None
    assert rig.pointer("$m3") is not None


def test_a_relation_that_never_comes_stops_holding_the_event_after_the_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="synapse_room_connect")
    failures_before = failures_counted()
    rig = FerryRig.build()
    rig.persist(event("$reaction"), event("$m2"))
    rig.preparer.relation_pending.add("$reaction")
    assert run(rig) is PassOutcome.RETRY_LATER
    rig.clock.ms += RELATION_WAIT_MS - 1
    assert run(rig) is PassOutcome.RETRY_LATER
    assert rig.pointer("$reaction") is None

    rig.clock.ms += 1
    assert run(rig) is PassOutcome.IDLE
    # Sent without waiting further (the preparer maps what it can), in order.
    assert rig.preparer.waited[-2:] == [False, True]
    assert rig.pointer("$reaction") is not None
    assert rig.pointer("$m2") is not None
    # Waiting is not failing: nothing was counted towards giving up.
    assert failures_counted() == failures_before
    assert not [r for r in caplog.records if r.getMessage().startswith("Failed to ferry")]
    assert [r.getMessage() for r in caplog.records if "without waiting" in r.getMessage()] == [
        f"$reaction goes into {TARGET} without waiting longer for its relation"
    ]


def test_a_revoked_direction_forgets_the_event_it_held() -> None:
    rig = FerryRig.build()
    rig.persist(event("$reaction"))
    rig.preparer.relation_pending.add("$reaction")
    assert run(rig) is PassOutcome.RETRY_LATER
    assert rig.batches.held.count() == 1
    assert held_gauge() == 1

    rig.store.targets.clear()
    rig.scheduler.connections_changed()
    assert run(rig) is PassOutcome.IDLE
    assert rig.batches.held.count() == 0
    assert held_gauge() == 0
    assert rig.pointer("$reaction") is None


def test_a_direction_back_from_another_process_waits_afresh_for_the_relation() -> None:
    owned = {(SOURCE, TARGET)}
    rig = FerryRig.build(owns=lambda room, target: (room, target) in owned)
    rig.persist(event("$reaction"))
    rig.preparer.relation_pending.add("$reaction")
    assert run(rig) is PassOutcome.RETRY_LATER

    # Another process carries the direction for longer than the wait...
    owned.clear()
    rig.scheduler.connections_changed()
    assert run(rig) is PassOutcome.IDLE
    assert rig.batches.held.count() == 0
    rig.clock.ms += RELATION_WAIT_MS

    # ...then this one again: the relation may still come, as after a restart.
    owned.add((SOURCE, TARGET))
    rig.scheduler.connections_changed()
    assert run(rig) is PassOutcome.RETRY_LATER
    assert rig.pointer("$reaction") is None
    assert rig.preparer.waited[-1] is True
    rig.clock.ms += RELATION_WAIT_MS
    assert run(rig) is PassOutcome.IDLE
    assert rig.pointer("$reaction") is not None


def test_a_held_event_passed_over_is_held_no_longer() -> None:
    rig = FerryRig.build()
    rig.persist(event("$reaction"), event("$m2"))
    rig.preparer.relation_pending.add("$reaction")
    assert run(rig) is PassOutcome.RETRY_LATER
    assert rig.batches.held.count() == 1

    # The target room banned the sender meanwhile: the event is withheld.
    rig.moderation.banned.add(ALICE)
    assert run(rig) is PassOutcome.IDLE
    assert rig.batches.held.count() == 0
