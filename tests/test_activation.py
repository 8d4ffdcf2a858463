"""Many connections activated at once on a real homeserver: each room hears
"now connected" once, and the bot's events in it are only those it needs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from harness.client import MatrixClient
from harness.connect_api import connect, notices_from, unique, wait_for_notice
from harness.synapse import Homeserver

PAIRS = 6


def bot_memberships(client: MatrixClient, room_id: str, bot: str) -> list[str]:
    """The membership of every event about the bot in the room, oldest first."""
    chunk = client.messages(room_id, dir="b", limit=200)["chunk"]
    return [
        e["content"].get("membership", "")
        for e in reversed(chunk)
        if e.get("type") == "m.room.member" and e.get("state_key") == bot
    ]


def connect_pairs(
    hs: Homeserver, preset: str
) -> tuple[MatrixClient, MatrixClient, list[tuple[str, str]]]:
    alice, bob = hs.register(unique("alice")), hs.register(unique("bob"))
    pairs = [
        (
            alice.create_room(name=unique("A"), preset=preset),
            bob.create_room(name=unique("B"), preset=preset),
        )
        for _ in range(PAIRS)
    ]

    def both(pair: tuple[str, str]) -> None:
        a, b = pair
        connect(alice, a, b)
        assert connect(bob, b, a)["status"] == "active"

    # Consents for different pairs at once: reconciliation has independent
    # pairs to run side by side.
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(both, pairs))
    bot: str = hs.info()["bot_user_id"]
    for a, b in pairs:
        wait_for_notice(alice, a, bot, "now connected")
        wait_for_notice(bob, b, bot, "now connected")
    return alice, bob, pairs


def test_rooms_activated_at_once_hear_now_connected_once(homeserver: Homeserver) -> None:
    alice, bob, pairs = connect_pairs(homeserver, "private_chat")
    bot: str = homeserver.info()["bot_user_id"]
    for client, room_id in [(alice, a) for a, _ in pairs] + [(bob, b) for _, b in pairs]:
        connected = [n for n in notices_from(client, room_id, bot) if "now connected" in n]
        assert len(connected) == 1, room_id
        # A private room: invited by the admin who consented, then joined, once.
        assert bot_memberships(client, room_id, bot) == ["invite", "join"], room_id


def test_the_bot_joins_a_public_room_without_an_invite(homeserver: Homeserver) -> None:
    alice, bob, pairs = connect_pairs(homeserver, "public_chat")
    bot: str = homeserver.info()["bot_user_id"]
    for client, room_id in [(alice, a) for a, _ in pairs] + [(bob, b) for _, b in pairs]:
        assert bot_memberships(client, room_id, bot) == ["join"], room_id
