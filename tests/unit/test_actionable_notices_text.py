"""Texts that name rooms for people, and that say why a request cannot reach
the other room and who must do what."""

from __future__ import annotations

import pytest
from synapse.api.errors import SynapseError

from synapse_room_connect.bot import notices
from synapse_room_connect.bot.notices import JoinRefusal
from synapse_room_connect.bot.room_names import RoomNames
from synapse_room_connect.connections.delivery import Undeliverable, classify_join_error
from synapse_room_connect.constants import ACK_VISIBILITY

BOT = "@room-connect:hs"


def test_a_room_is_named_by_alias_then_name_then_id() -> None:
    assert RoomNames("!b:hs", "#b:hs", "Lobby").label == "#b:hs"
    assert RoomNames("!b:hs", None, "Lobby").label == '"Lobby" (!b:hs)'
    assert RoomNames("!b:hs").label == "!b:hs"


def test_a_command_names_a_room_by_address_never_by_name() -> None:
    assert RoomNames("!b:hs", alias="#b:hs", name="Lobby").address == "#b:hs"
    assert RoomNames("!b:hs", name="Lobby").address == "!b:hs"
    assert RoomNames("!b:hs", name="Lobby").label == '"Lobby" (!b:hs)'


def test_not_invited_says_who_must_invite_whom_and_what_to_run() -> None:
    text = notices.request_undeliverable(
        "#other:hs", "#this:hs", BOT, JoinRefusal.NOT_INVITED, "403: no", ()
    )
    assert text == (
        "Requested a connection from this room to #other:hs, but I (@room-connect:hs) "
        "cannot join #other:hs: it is invite-only (or private) and nobody there has "
        "invited me, so its admins cannot see this request. An admin there must invite "
        "@room-connect:hs, then run `!connect approve #this:hs` in that room."
    )


def test_unreachable_is_told_apart_from_not_invited() -> None:
    text = notices.request_undeliverable(
        "!x:gone", "#this:hs", BOT, JoinRefusal.UNREACHABLE, "502: no server", ()
    )
    assert "cannot reach !x:gone: its server did not answer" in text
    assert "(502: no server)" in text
    assert "invite-only" not in text
    assert "`!connect approve #this:hs`" in text


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (JoinRefusal.BANNED, "I am banned there"),
        (JoinRefusal.OTHER, "could not join #o:hs (500: boom)"),
    ],
)
def test_other_refusals_still_say_what_to_do(refusal: JoinRefusal, expected: str) -> None:
    text = notices.request_undeliverable("#o:hs", "!t:hs", BOT, refusal, "500: boom", ())
    assert expected in text
    assert f"invite {BOT}" in text
    assert "`!connect approve !t:hs`" in text


def test_blockers_are_added_to_an_undeliverable_request() -> None:
    text = notices.request_undeliverable(
        "#o:hs", "#t:hs", BOT, JoinRefusal.NOT_INVITED, "", (ACK_VISIBILITY,)
    )
    assert text.endswith(
        "Blocked until both rooms acknowledge: one room is public or world-readable "
        "and the other is not."
    )


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        (SynapseError(403, "You are not invited to this room."), JoinRefusal.NOT_INVITED),
        (SynapseError(403, "You are banned from this room"), JoinRefusal.BANNED),
        (SynapseError(404, "No known servers"), JoinRefusal.UNREACHABLE),
        (SynapseError(502, "Failed to make_join via any server"), JoinRefusal.UNREACHABLE),
        (SynapseError(400, "Unsupported room version"), JoinRefusal.OTHER),
        (RuntimeError("surprise"), JoinRefusal.OTHER),
    ],
)
def test_join_errors_are_classified(error: Exception, refusal: JoinRefusal) -> None:
    found = classify_join_error(error)
    assert found.refusal is refusal
    assert found.detail


def test_the_detail_keeps_synapses_words() -> None:
    assert classify_join_error(SynapseError(502, "no way")) == Undeliverable(
        JoinRefusal.UNREACHABLE, "502: no way"
    )


def test_a_power_refusal_names_who_has_the_power() -> None:
    holders = [("Owner", "@owner:hs"), (None, "@mod:hs"), ("@x:hs", "@x:hs")]
    assert notices.power_refused(100, "@bob:hs", 0, holders) == (
        "Changing this room's connections needs power level 100; @bob:hs has 0. "
        "Members who have it: Owner (@owner:hs), @mod:hs, @x:hs."
    )
    assert notices.power_refused(50, "@bob:hs", 0, []) == (
        "Changing this room's connections needs power level 50; @bob:hs has 0. "
        "No member of this room has power level 50."
    )


def test_a_long_list_of_holders_is_cut_with_a_count() -> None:
    holders = [(f"Mod {i}", f"@mod{i}:hs") for i in range(notices.MAX_NAMED_HOLDERS + 2)]
    text = notices.power_holders(100, holders)
    assert text.startswith("Members who have it: Mod 0 (@mod0:hs), ")
    assert f"@mod{notices.MAX_NAMED_HOLDERS - 1}:hs) and 2 more." in text
    assert f"@mod{notices.MAX_NAMED_HOLDERS}:hs" not in text


def test_a_bridge_portal_refusal_gives_both_routes_in_one_forwardable_sentence() -> None:
    bridge = notices.bridge_routes("!p:hs", "irc", "@ircbot:hs", "hs")
    assert bridge == (
        "Room !p:hs is run by the bridge (application service) irc, through its user "
        "@ircbot:hs, so its connections can be changed by the bridge's operator with the "
        "bridge's as_token on /_synapse/client/org.matrix.msc2923/rooms/!p:hs/connections, "
        "or by an admin of hs with "
        "/_synapse/client/org.matrix.msc2923/admin/rooms/!p:hs/connections "
        "(docs/msc2923.md, section 11)."
    )
    text = notices.power_refused(100, "@bob:hs", 0, [("IRC Bridge", "@ircbot:hs")], bridge)
    assert text.endswith("Members who have it: IRC Bridge (@ircbot:hs). " + bridge)
