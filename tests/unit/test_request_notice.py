"""Reconciliation asks for the requester's notice, which knows whether the
other room can be reached; only on a new request."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from synapse_room_connect.core.handshake import Status
from tests.unit.stand_ins import run_async
from tests.unit.test_reconcile import ALICE, BOB, A, B, World


@run_async
async def test_a_new_request_takes_its_notice_from_the_delivery_check() -> None:
    world = World()
    asked: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = []

    async def request_notice(
        here: str, other: str, via: Sequence[str], blocked_by: Sequence[str]
    ) -> str:
        asked.append((here, other, tuple(via), tuple(blocked_by)))
        return f"cannot reach {other}"

    world.reconciler = attrs.evolve(world.reconciler, request_notice=request_notice)
    world.rooms.consent(A, B, ALICE, world.bot.user_id)
    await world.reconcile(A)
    assert world.status(A, B) is Status.REQUESTED
    assert world.bot.notices_in(A) == [f"cannot reach {B}"]
    assert asked == [(A, B, ("hs",), ())]

    # Nothing changed: no second check, no second notice.
    await world.reconcile(A)
    assert len(asked) == 1

    # Approval activates it; the request notice is not asked for again.
    world.rooms.consent(B, A, BOB, world.bot.user_id)
    await world.reconcile(B)
    assert world.status(A, B) is Status.ACTIVE
    assert len(asked) == 1
