"""Shared steps for ferry tests: connected rooms and pointer lookups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from tests.connect_api import connect, unique, wait_for_notice
from tests.harness.client import JsonDict, MatrixClient

POINTER = "org.matrix.msc2923.pointer"
PROFILE = "com.beeper.per_message_profile"


@attrs.frozen
class Pair:
    alice: MatrixClient
    room_a: str
    bob: MatrixClient
    room_b: str
    bot: str


def connected_pair(hs: Any, **room: Any) -> Pair:
    bot: str = hs.info()["bot_user_id"]
    alice = hs.register(unique("alice"), displayname="Alice")
    bob = hs.register(unique("bob"), displayname="Bob")
    room_a = alice.create_room(name=unique("A"), **room)
    room_b = bob.create_room(name=unique("B"), **room)
    connect(alice, room_a, room_b)
    assert connect(bob, room_b, room_a)["status"] == "active"
    wait_for_notice(alice, room_a, bot, "now connected")
    wait_for_notice(bob, room_b, bot, "now connected")
    return Pair(alice, room_a, bob, room_b, bot)


def is_pointer_to(event: JsonDict, original_id: str) -> bool:
    return event.get("content", {}).get(POINTER, {}).get("event_id") == original_id


def wait_for_pointer(
    client: MatrixClient, room_id: str, original_id: str, timeout: float = 30
) -> JsonDict:
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
