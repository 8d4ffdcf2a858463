"""Room upgrades under a connection: the successor carries it on, with no new
approval from the other side (docs/msc2923.md, "Room upgrades")."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import CertificateAuthority, Homeserver, HomeserverFactory
from harness.client import CLIENT_V3, MatrixClient
from harness.connect_api import (
    CONNECTION,
    connect,
    connections,
    notices_from,
    revoke,
    unique,
    wait_for_membership,
    wait_for_notice,
)
from harness.ferry_helpers import (
    POINTER,
    barrier,
    connected_across,
    connected_pair,
    pointers_in,
    send_edit,
    wait_for_pointer,
)
from harness.synapse import start_together
from synapse_room_connect.connections.upgrade_follow import GRACE_SECONDS

TIMEOUT = 90


def upgrade(client: MatrixClient, room_id: str) -> str:
    path = f"{CLIENT_V3}/rooms/{room_id.replace('!', '%21')}/upgrade"
    replacement: str = client.request("POST", path, {"new_version": "12"})["replacement_room"]
    return replacement


def ferried(client: MatrixClient, room_id: str, original_id: str) -> int:
    return sum(
        1 for p in pointers_in(client, room_id) if p["content"][POINTER]["event_id"] == original_id
    )


def check_both_ways(x: MatrixClient, room_x: str, y: MatrixClient, room_y: str) -> None:
    """A message each way crosses, exactly once."""
    there = x.send_message(room_x, unique("from x"))
    back = y.send_message(room_y, unique("from y"))
    wait_for_pointer(y, room_y, there, timeout=TIMEOUT)
    wait_for_pointer(x, room_x, back, timeout=TIMEOUT)
    barrier(x, room_x)
    barrier(y, room_y)
    assert ferried(y, room_y, there) == 1
    assert ferried(x, room_x, back) == 1


def check_moved(client: MatrixClient, room: str, old: str, new: str, bot: str) -> None:
    """``room`` heard of the upgrade and lists the successor, not the old room, as live."""
    wait_for_notice(client, room, bot, "was upgraded to", timeout=TIMEOUT)
    listed = connections(client, room)
    assert listed[new]["status"] == "active"
    assert listed[old]["status"] == "revoked"
    assert listed[old]["upgraded_to"] == new


def upgrade_connected(
    upgrader: MatrixClient, room: str, other: MatrixClient, other_room: str, bot: str
) -> str:
    """Upgrade ``room``: its successor is connected at once, the other room is
    told, and a message crosses each way. Returns the successor."""
    new = upgrade(upgrader, room)
    wait_for_notice(upgrader, new, bot, "now connected", timeout=TIMEOUT)
    check_moved(other, other_room, room, new, bot)
    check_both_ways(upgrader, new, other, other_room)
    return new


def test_upgrade_of_a_then_of_b(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    alice, bob, bot = pair.alice, pair.bob, pair.bot
    before = bob.send_message(pair.room_b, "before the upgrade")
    wait_for_pointer(alice, pair.room_a, before, timeout=TIMEOUT)

    room_a2 = upgrade_connected(alice, pair.room_a, bob, pair.room_b, bot)
    # A reply to an event whose pointer is in the old room: no counterpart in
    # the new one, so it crosses without the relation rather than not at all.
    reply = bob.send_message(
        pair.room_b, "a late reply", **{"m.relates_to": {"m.in_reply_to": {"event_id": before}}}
    )
    pointer = wait_for_pointer(alice, room_a2, reply, timeout=TIMEOUT)
    assert "m.relates_to" not in pointer["content"]
    # An edit of it has no pointer to edit there: it crosses as its own message.
    edit = send_edit(bob, pair.room_b, before, "before, edited")
    pointer = wait_for_pointer(alice, room_a2, edit, timeout=TIMEOUT)
    assert "m.relates_to" not in pointer["content"]
    assert pointer["content"]["body"].endswith("* before, edited")

    room_b2 = upgrade_connected(bob, pair.room_b, alice, room_a2, bot)
    # A2's consent names B; its successor is still revoked from A2 by name.
    revoke(alice, room_a2, room_b2)
    wait_for_notice(bob, room_b2, bot, "has ended", timeout=TIMEOUT)
    assert connections(alice, room_a2)[room_b2]["status"] == "revoked"


def test_upgrade_of_b_then_of_a(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    alice, bob, bot = pair.alice, pair.bob, pair.bot

    room_b2 = upgrade_connected(bob, pair.room_b, alice, pair.room_a, bot)

    upgrade_connected(alice, pair.room_a, bob, room_b2, bot)


@pytest.mark.federation
def test_upgrade_across_homeservers(federation: tuple[Homeserver, Homeserver]) -> None:
    """B on hs2 is upgraded while hs1's bot is the ferry: hs2's module brings that
    bot into the successor and consents there as the upgrader."""
    hs1, hs2 = federation
    pair = connected_across(hs1, hs2)
    alice, bob, bot = pair.alice, pair.bob, pair.bot

    room_b2 = upgrade_connected(bob, pair.room_b, alice, pair.room_a, bot)

    room_a2 = upgrade(alice, pair.room_a)
    wait_for_notice(bob, room_b2, bot, "was upgraded to", timeout=TIMEOUT)
    wait_for_notice(alice, room_a2, bot, "now connected", timeout=TIMEOUT)
    check_both_ways(alice, room_a2, bob, room_b2)
    # hs2 carried B's consent over, so hs1's bot had nobody to tell how to reconnect.
    told = notices_from(alice, pair.room_a, bot) + notices_from(bob, room_b2, bot)
    assert not [n for n in told if "did not carry" in n]


@pytest.fixture
def with_plain_server(harness_dir: Path) -> Iterator[tuple[Homeserver, Homeserver]]:
    """hs1 with the module, and a federating homeserver without it."""
    ca = CertificateAuthority(harness_dir / "plain-federation-ca")
    factory = HomeserverFactory(harness_dir)
    try:
        servers = (
            factory(name="with-module", ca=ca, start=False),
            factory(name="plain", ca=ca, start=False, config_overrides={"modules": []}),
        )
        start_together(servers)
        yield servers
    finally:
        factory.destroy_all()


def connect_with_plain_server(
    hs1: Homeserver, plain: Homeserver
) -> tuple[MatrixClient, MatrixClient, str, str, str]:
    """Alice's room A on hs1 connected to Bob's room B on the plain server, hs1's
    bot ferrying; returns (alice, bob, bot, room A, room B)."""
    bot: str = hs1.info()["bot_user_id"]
    alice = hs1.register(unique("alice"), displayname="Alice")
    bob = plain.register(unique("bob"), displayname="Bob")
    # Public, so the bot can enter the successor to post there.
    room_a = alice.create_room(name="A", preset="public_chat")
    room_b = bob.create_room(name="B", preset="public_chat")
    connect(alice, room_a, room_b, via=[plain.server_name])
    wait_for_membership(bob, room_b, bot, "join", timeout=TIMEOUT)
    content = {"room_id": room_a, "via": [hs1.server_name], "ferry": bot}
    bob.send_state(room_b, CONNECTION, room_a, content)
    wait_for_notice(alice, room_a, bot, "now connected", timeout=TIMEOUT)
    return alice, bob, bot, room_a, room_b


@pytest.mark.federation
def test_upgrade_on_a_server_without_the_module(
    with_plain_server: tuple[Homeserver, Homeserver],
) -> None:
    """Nobody carries the consent over: both rooms are told the exact command,
    and running it reconnects them."""
    alice, bob, bot, room_a, room_b = connect_with_plain_server(*with_plain_server)

    room_b2 = upgrade(bob, room_b)
    told_a = wait_for_notice(alice, room_a, bot, "did not carry", timeout=TIMEOUT)
    told_b2 = wait_for_notice(bob, room_b2, bot, "did not carry", timeout=TIMEOUT)
    text = told_a["content"]["body"]
    assert text == told_b2["content"]["body"]
    path = f"/_matrix/client/v3/rooms/{room_b2}/state/{CONNECTION}/{room_a}"
    assert path in text
    # The command as given, run by the new room's admin, reconnects.
    bob.send_state(room_b2, CONNECTION, room_a, json.loads(text.split(path, 1)[1]))
    wait_for_notice(alice, room_a, bot, "now connected", timeout=TIMEOUT)
    assert connections(alice, room_a)[room_b2]["status"] == "active"
    check_both_ways(alice, room_a, bob, room_b2)


@pytest.mark.federation
def test_a_restart_during_the_grace_still_explains_once(
    with_plain_server: tuple[Homeserver, Homeserver],
) -> None:
    """hs1 stops while it waits to see whether the upgrade is carried over:
    its start-up explains, once, and a second restart adds nothing."""
    hs1, _ = with_plain_server
    alice, bob, bot, room_a, room_b = connect_with_plain_server(*with_plain_server)

    room_b2 = upgrade(bob, room_b)
    # Once the tombstone has crossed, well inside the grace.
    time.sleep(GRACE_SECONDS / 4)
    hs1.restart()
    wait_for_notice(alice, room_a, bot, "did not carry", timeout=TIMEOUT)
    wait_for_notice(bob, room_b2, bot, "did not carry", timeout=TIMEOUT)
    hs1.restart()
    # Long enough for a second explanation, had start-up not found it settled.
    time.sleep(GRACE_SECONDS + 5)
    for client, room in ((alice, room_a), (bob, room_b2)):
        assert len([n for n in notices_from(client, room, bot) if "did not carry" in n]) == 1
