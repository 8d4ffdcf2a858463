"""The handshake between rooms on two federating homeservers."""

from __future__ import annotations

import pytest

from harness.client import MatrixError
from harness.connect_api import CONNECTION, connect, connections, unique, wait_for_notice
from harness.ferry_helpers import Pair, consent_with_remote_ferry
from harness.synapse import Homeserver, HomeserverFactory

pytestmark = pytest.mark.federation


def test_cross_server_handshake_with_invited_ferry(
    federation: tuple[Homeserver, Homeserver],
) -> None:
    hs1, hs2 = federation
    bot = hs1.info()["bot_user_id"]
    alice = hs1.register(unique("alice"))
    bob = hs2.register(unique("bob"))
    room_a = alice.create_room(name="A")
    room_b = bob.create_room(name="B")  # private: the bot needs an invite

    requested = connect(alice, room_a, room_b, via=[hs2.server_name])
    assert requested["status"] == "requested"
    assert requested["via"] == [hs2.server_name]
    wait_for_notice(alice, room_a, bot, "Requested a connection")

    consent_with_remote_ferry(Pair(alice, room_a, bob, room_b, bot), hs1.server_name)
    assert connections(alice, room_a)[room_b]["status"] == "active"

    # hs2 is not in A, so it cannot see A's side: it reports B's own request.
    assert connections(bob, room_b)[room_a]["status"] == "requested"

    # Revocation from the remote side reaches hs1 over federation.
    bob.send_state(room_b, CONNECTION, room_a, {})
    wait_for_notice(alice, room_a, bot, "has ended", timeout=60)
    assert connections(alice, room_a)[room_b]["status"] == "revoked"


def test_remote_ferry_must_be_joined_before_naming_it(
    federation: tuple[Homeserver, Homeserver],
) -> None:
    hs1, hs2 = federation
    bot = hs1.info()["bot_user_id"]
    bob = hs2.register(unique("bob"))
    room_b = bob.create_room(name="B")
    with pytest.raises(MatrixError) as info:
        bob.send_state(
            room_b,
            CONNECTION,
            "!a:" + hs1.server_name,
            {"room_id": "!a:" + hs1.server_name, "via": [hs1.server_name], "ferry": bot},
        )
    assert info.value.errcode == "M_FORBIDDEN"
    assert "invite and join it first" in (info.value.error or "")


def test_forged_remote_connection_state_is_ignored(
    federation: tuple[Homeserver, Homeserver], make_homeserver: HomeserverFactory
) -> None:
    """A moderator on a server without the module writes a connection event
    that the room's auth rules accept; it is no consent, so hs1 ignores it."""
    hs1, _ = federation
    evil = make_homeserver(name="evil", config_overrides={"modules": []})
    bot = hs1.info()["bot_user_id"]
    alice = hs1.register(unique("alice"))
    mallory = evil.register(unique("mallory"))
    room_a = alice.create_room(name="A", preset="public_chat")
    room_c = alice.create_room(name="C", preset="public_chat")
    connect(alice, room_c, room_a)  # C asks to connect to A
    wait_for_notice(alice, room_a, bot, "asks to connect to this room")

    mallory.join(room_a, via=[hs1.server_name])
    promoted = alice.set_power_level(room_a, mallory.user_id or "", 50)
    mallory.wait_for_event(room_a, lambda e: e.get("event_id") == promoted, timeout=60)
    forged = mallory.send_state(
        room_a, CONNECTION, room_c, {"room_id": room_c, "via": [hs1.server_name], "ferry": bot}
    )
    alice.wait_for_event(room_a, lambda e: e.get("event_id") == forged, timeout=60)

    assert connections(alice, room_a)[room_c]["status"] == "incoming"
    alice.send_message(room_a, "!connect list")
    listing = wait_for_notice(alice, room_a, bot, "Connections of this room")
    assert ": incoming (ferry)" in listing["content"]["body"]
    assert f"Ignoring connection event {forged}" in hs1.log_text()
    assert "had power level 50 < 100" in hs1.log_text()
