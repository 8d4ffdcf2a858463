"""The bot's one reaction per key in a batch: a redaction of it goes once, and
a reaction read after it is prepared only once that redaction is sent."""

from __future__ import annotations

import asyncio
from typing import Any

from synapse.module_api import EventBase

from synapse_room_connect.ferry.batch import transaction_id
from synapse_room_connect.ferry.interfaces import Counterpart, CounterpartKind

from .ferry_stand_ins import TARGET, FerryRig, StandInPreparer, event

BOT_REACTION = "$bot-reaction"


class ReactionPreparer(StandInPreparer):
    """Every redaction withdraws the bot's reaction; every reaction is the
    bot's reaction to one pointer. Notes what had been sent when each
    reaction was prepared."""

    def __init__(self, rig: FerryRig) -> None:
        super().__init__(rig.store)
        self._rig = rig
        self.sent_before_reaction: list[list[list[str]]] = []

    async def prepare(
        self,
        event: EventBase,
        target: str,
        *,
        wait_for_relations: bool = True,
        by_ghost: bool = False,
    ) -> Counterpart | None:
        if event.type == "m.room.redaction":
            content: dict[str, Any] = {"redacts": BOT_REACTION}
            return Counterpart(
                "m.room.redaction", content, CounterpartKind.REDACTION, redacts=BOT_REACTION
            )
        if event.type == "m.reaction":
            self.sent_before_reaction.append(list(self._rig.sender.sends))
            # To $m1's pointer: Synapse refuses a reaction to an event it lacks.
            pointer = self._rig.pointer("$m1") or "$unknown"
            relates = {"rel_type": "m.annotation", "event_id": pointer, "key": "+1"}
            return Counterpart("m.reaction", {"m.relates_to": relates}, CounterpartKind.REACTION)
        return await super().prepare(
            event, target, wait_for_relations=wait_for_relations, by_ghost=by_ghost
        )


def rig_with_reactions() -> tuple[FerryRig, ReactionPreparer]:
    rig = FerryRig.build()
    preparer = ReactionPreparer(rig)
    rig.preparer = preparer
    rig.restart()
    return rig, preparer


def txn(event_id: str) -> str:
    return transaction_id(event_id, TARGET)


def test_a_reaction_after_a_queued_withdrawal_waits_for_it_to_be_sent() -> None:
    rig, preparer = rig_with_reactions()
    rig.persist(
        event("$m1"),
        event("$x2", type="m.room.redaction", redacts="$old"),
        event("$r3", type="m.reaction"),
    )
    asyncio.run(rig.scheduler.run_pass(rig.position))
    # Whether the bot's reaction still stood was asked only once its
    # redaction had gone out.
    assert preparer.sent_before_reaction == [[[txn("$m1"), txn("$x2")]]]
    assert rig.sender.sends == [[txn("$m1"), txn("$x2")], [txn("$r3")]]
    assert rig.cursor == 3


def test_the_bot_s_reaction_is_redacted_once_however_many_withdraw_it() -> None:
    rig, _ = rig_with_reactions()
    rig.persist(
        event("$x1", type="m.room.redaction", redacts="$a"),
        event("$x2", type="m.room.redaction", redacts="$b"),
        event("$m3"),
    )
    asyncio.run(rig.scheduler.run_pass(rig.position))
    assert rig.sender.sends == [[txn("$x1"), txn("$m3")]]
    assert rig.pointer("$x2") is None
    assert rig.cursor == 3
