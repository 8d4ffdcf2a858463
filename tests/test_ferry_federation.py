"""Pointers across two federating homeservers, with hs1's bot as the ferry."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from harness.connect_api import unique, wait_for_membership
from harness.ferry_helpers import (
    POINTER,
    barrier,
    connected_across,
    pointers_in,
    wait_for_pointer,
)
from harness.synapse import Homeserver, HomeserverFactory
from synapse_room_connect.constants import DEFAULT_GHOST_LOCALPART_PREFIX
from synapse_room_connect.core.ghosts import GhostNamespace

pytestmark = pytest.mark.federation

ORIGINAL = "org.matrix.msc2923.original"


def test_original_on_hs1_pointer_on_hs2_and_back(federation: tuple[Homeserver, Homeserver]) -> None:
    hs1, hs2 = federation
    pair = connected_across(hs1, hs2)
    alice, room_a, bob, room_b, bot = pair.alice, pair.room_a, pair.bob, pair.room_b, pair.bot
    # hs2 runs the module too, and its own bot is in B: it must not ferry as well.
    bot2 = hs2.info()["bot_user_id"]
    bob.invite(room_b, bot2)
    wait_for_membership(bob, room_b, bot2, "join", timeout=60)

    hello = alice.send_message(room_a, "hello over federation")
    pointer = wait_for_pointer(bob, room_b, hello, timeout=60)
    # Alice's ghost on hs1, invited by hs1's bot, joined B on hs2 to send it.
    namespace = GhostNamespace(DEFAULT_GHOST_LOCALPART_PREFIX, hs1.server_name)
    alice_ghost = namespace.user_id_for(alice.user_id or "", room_a)
    assert pointer["sender"] == alice_ghost
    assert pointer["content"]["body"] == "hello over federation"
    assert bob.get_state(room_b, "m.room.member", alice_ghost)["displayname"] == "Alice (A)"
    # hs2 is not in A, so it cannot vouch for or load the original.
    assert pointer["unsigned"]["org.matrix.msc2923.original"] == {
        "placeholder": True,
        "room_id": room_a,
        "via": [hs1.server_name],
    }

    reply = bob.send_message(
        room_b, "hi back", **{"m.relates_to": {"m.in_reply_to": {"event_id": pointer["event_id"]}}}
    )
    back = wait_for_pointer(alice, room_a, reply, timeout=60)
    assert back["sender"] == namespace.user_id_for(bob.user_id or "", room_b)
    assert back["content"]["body"] == "hi back"
    assert back["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": hello}}

    barrier(bob, room_b)
    barrier(alice, room_a)
    in_b = [p["content"][POINTER]["event_id"] for p in pointers_in(bob, room_b)]
    in_a = [p["content"][POINTER]["event_id"] for p in pointers_in(alice, room_a)]
    assert in_b.count(hello) == 1
    assert in_a.count(reply) == 1
    assert {p["sender"] for p in pointers_in(bob, room_b)} == {alice_ghost}
    assert bot != alice_ghost


def test_pointers_reach_a_homeserver_that_was_down(make_homeserver: HomeserverFactory) -> None:
    """The ferry keeps sending into B while B's server is down; Synapse's
    federation catch-up delivers every pointer once it is back."""
    quick_retry = {"federation": {"destination_min_retry_interval": 500}}
    hs1 = make_homeserver(name="up", config_overrides=quick_retry)
    hs2 = make_homeserver(name="down", config_overrides=quick_retry)
    pair = connected_across(hs1, hs2)
    alice, room_a, bob, room_b = pair.alice, pair.room_a, pair.bob, pair.room_b

    hs2.stop()
    sent = [alice.send_message(room_a, f"while B's server is down {i}") for i in range(20)]
    hs2.start()
    # Anything hs2 sends tells hs1 it is back, which ends hs1's backoff.
    bob.send_message(room_b, "I'm back")
    wait_for_pointer(bob, room_b, sent[-1], timeout=120)
    ferried = [p["content"][POINTER]["event_id"] for p in pointers_in(bob, room_b)]
    assert ferried == sent


def test_remote_user_cannot_forge_a_pointer_over_federation(
    federation: tuple[Homeserver, Homeserver],
) -> None:
    """bob on hs2 crafts pointers in B naming a private room on hs1; a reader
    on hs1 gets placeholders from both the unsigned field and the merged
    timeline, and the private text appears nowhere."""
    hs1, hs2 = federation
    pair = connected_across(hs1, hs2)
    victim = hs1.register(unique("victim"))
    private = victim.create_room(name="private")
    secret = victim.send_message(private, "hs1 secret")
    carol = hs1.register(unique("carol"))
    pair.bob.invite(pair.room_b, carol.user_id or "")
    carol.join(pair.room_b, via=[hs2.server_name])
    forged = pair.bob.send_message(
        pair.room_b,
        "look",
        **{POINTER: {"room_id": private, "event_id": secret, "sender": victim.user_id}},
    )
    seen = carol.wait_for_event(pair.room_b, lambda e: e.get("event_id") == forged, timeout=60)
    assert seen["unsigned"][ORIGINAL] == {"placeholder": True, "room_id": private, "via": []}
    path = f"/_synapse/client/org.matrix.msc2923/rooms/{quote(pair.room_b, safe='')}/messages"
    page = carol.request("GET", path, query={"dir": "b", "limit": "50"})
    assert secret not in {e["event_id"] for e in page["chunk"]}
    assert "hs1 secret" not in str(page)
