"""Shared steps for ferry tests: connected rooms and pointer lookups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from harness.client import JsonDict, MatrixClient
from harness.connect_api import (
    CONNECTION,
    connect,
    unique,
    wait_for_membership,
    wait_for_notice,
)

POINTER = "org.matrix.msc2923.pointer"
PROFILE = "com.beeper.per_message_profile"


@attrs.frozen
class Pair:
    alice: MatrixClient
    room_a: str
    bob: MatrixClient
    room_b: str
    bot: str


def connected_pair(hs: Any, senders: str | None = None, **room: Any) -> Pair:
    """Two rooms connected; ``senders`` ("ghosts" or "bot"), if given, is what
    both rooms' consents ask for."""
    bot: str = hs.info()["bot_user_id"]
    alice = hs.register(unique("alice"), displayname="Alice")
    bob = hs.register(unique("bob"), displayname="Bob")
    room_a = alice.create_room(name=unique("A"), **room)
    room_b = bob.create_room(name=unique("B"), **room)
    chosen = {} if senders is None else {"senders": senders}
    connect(alice, room_a, room_b, **chosen)
    assert connect(bob, room_b, room_a, **chosen)["status"] == "active"
    wait_for_notice(alice, room_a, bot, "now connected")
    wait_for_notice(bob, room_b, bot, "now connected")
    return Pair(alice, room_a, bob, room_b, bot)


def connected_across(hs1: Any, hs2: Any) -> Pair:
    """Room A on hs1 and room B on hs2, connected with hs1's bot as the ferry:
    A's admin requests, B's admin invites that bot and consents by state event."""
    bot: str = hs1.info()["bot_user_id"]
    alice = hs1.register(unique("alice"), displayname="Alice")
    bob = hs2.register(unique("bob"), displayname="Bob")
    room_a = alice.create_room(name="A")
    room_b = bob.create_room(name="B")
    connect(alice, room_a, room_b, via=[hs2.server_name])
    pair = Pair(alice, room_a, bob, room_b, bot)
    consent_with_remote_ferry(pair, hs1.server_name)
    return pair


def consent_with_remote_ferry(pair: Pair, ferry_server: str) -> None:
    """B's admin lets the other server's ferry into B, consents with a state
    event naming it, and both sides see the bot's "now connected" notice."""
    pair.bob.invite(pair.room_b, pair.bot)
    wait_for_membership(pair.bob, pair.room_b, pair.bot, "join", timeout=60)
    consent = {"room_id": pair.room_a, "via": [ferry_server], "ferry": pair.bot}
    pair.bob.send_state(pair.room_b, CONNECTION, pair.room_a, consent)
    wait_for_notice(pair.alice, pair.room_a, pair.bot, "now connected", timeout=60)
    wait_for_notice(pair.bob, pair.room_b, pair.bot, "now connected", timeout=60)


def send_edit(client: MatrixClient, room_id: str, original_id: str, new_body: str) -> str:
    return client.send_event(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": f"* {new_body}",
            "m.new_content": {"msgtype": "m.text", "body": new_body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original_id},
        },
    )


def is_pointer_to(event: JsonDict, original_id: str) -> bool:
    return bool(event.get("content", {}).get(POINTER, {}).get("event_id") == original_id)


def wait_for_pointer(
    client: MatrixClient, room_id: str, original_id: str, timeout: float = 60
) -> JsonDict:
    # Generous: CI shares two cores with other work; this bounds a hang, it
    # does not measure speed.
    return client.wait_for_event(
        room_id,
        lambda e: e.get("type") == "m.room.message" and is_pointer_to(e, original_id),
        timeout,
        description=f"pointer to {original_id}",
    )


def all_events(client: MatrixClient, room_id: str) -> Iterator[JsonDict]:
    """Every timeline event of the room, oldest first."""
    chunks: list[list[JsonDict]] = []
    token: str | None = None
    while True:
        page = client.messages(room_id, dir="b", limit=500, from_token=token)
        chunks.append(page["chunk"])
        token = page.get("end")
        if not page["chunk"] or token is None:
            break
    for chunk in reversed(chunks):
        yield from reversed(chunk)


def pointers_in(client: MatrixClient, room_id: str) -> list[JsonDict]:
    return [
        e
        for e in all_events(client, room_id)
        if e.get("type") == "m.room.message"
        and POINTER in e.get("content", {})
        and "m.new_content" not in e.get("content", {})
    ]


def barrier(client: MatrixClient, room_id: str) -> None:
    """Send a message and wait for it: what the ferry did before is now visible."""
    marker = client.send_message(room_id, unique("barrier"))
    client.wait_for_event(room_id, lambda e: e.get("event_id") == marker)
