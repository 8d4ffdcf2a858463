"""Which joins the room's state already refuses, so the bot does not ask."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api import EventBase

from synapse_room_connect.bot import join_rules
from synapse_room_connect.bot.notices import JoinRefusal
from tests.unit.ferry_stand_ins import event

BOT = "@bot:hs"


def state(join_rule: str | None, membership: str | None = None) -> dict[Any, EventBase]:
    found: dict[Any, EventBase] = {}
    if join_rule is not None:
        found[("m.room.join_rules", "")] = event(
            "$rules", type="m.room.join_rules", content={"join_rule": join_rule}, state_key=""
        )
    if membership is not None:
        found[("m.room.member", BOT)] = event(
            "$member", type="m.room.member", content={"membership": membership}, state_key=BOT
        )
    return found


@pytest.mark.parametrize(
    ("join_rule", "membership", "expected"),
    [
        ("invite", None, JoinRefusal.NOT_INVITED),
        ("knock", "leave", JoinRefusal.NOT_INVITED),
        ("private", None, JoinRefusal.NOT_INVITED),
        ("invite", "invite", None),
        ("invite", "join", None),
        ("public", None, None),
        ("public", "ban", JoinRefusal.BANNED),
        # Another room's members may join: only the join can tell.
        ("restricted", None, None),
        # No state here (a room on another server): only the join can tell.
        (None, None, None),
    ],
)
def test_refusal(
    join_rule: str | None, membership: str | None, expected: JoinRefusal | None
) -> None:
    assert join_rules.refusal(state(join_rule, membership), BOT) is expected


def test_public_rooms_need_no_invite() -> None:
    assert join_rules.is_public(state("public"))
    assert not join_rules.is_public(state("invite"))
    assert not join_rules.is_public(state(None))
