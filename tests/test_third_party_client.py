"""Pointers read by a client library this project did not write: matrix-nio.

The harness client only returns JSON, so it cannot tell whether pointers are
readable to real clients. matrix-nio parses /sync into typed events the way a
bot or client built on it would see them. It runs here without its e2e extra:
nothing in a plain connected room needs encryption.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import nio

from harness.connect_api import unique
from harness.ferry_helpers import POINTER, PROFILE, connected_pair
from harness.synapse import Homeserver

ORIGINAL = "org.matrix.msc2923.original"
SYNC_TIMEOUT_MS = 5_000
DEADLINE_S = 60.0


def content_of(event: nio.Event) -> dict[str, Any]:
    content: dict[str, Any] = event.source.get("content", {})
    return content


def pointer_to(events: list[nio.Event], original_id: str) -> nio.Event | None:
    """The pointer whose original is ``original_id`` (edits point at their
    edit event, so they never match a message's ID)."""
    for event in events:
        if content_of(event).get(POINTER, {}).get("event_id") == original_id:
            return event
    return None


async def sync_room_until(
    client: nio.AsyncClient,
    room_id: str,
    done: Callable[[list[nio.Event]], bool],
) -> list[nio.Event]:
    """Every timeline event nio parsed for ``room_id``, syncing until ``done``.

    Each sync long-polls, so the loop wakes when the server has news; the
    deadline bounds it when the ferry never delivers.
    """
    room_filter = {"room": {"rooms": [room_id], "timeline": {"limit": 50}}}
    seen: list[nio.Event] = []
    deadline = time.monotonic() + DEADLINE_S
    while not done(seen):
        if time.monotonic() > deadline:
            summary = [f"{type(e).__name__} {content_of(e).get('body')!r}" for e in seen]
            raise TimeoutError(f"nio did not see everything within {DEADLINE_S}s: {summary}")
        response = await client.sync(timeout=SYNC_TIMEOUT_MS, sync_filter=room_filter)
        assert isinstance(response, nio.SyncResponse), response
        room = response.rooms.join.get(room_id)
        if room is not None:
            seen.extend(room.timeline.events)
    return seen


async def read_with_nio(
    base_url: str,
    user_id: str,
    device_id: str,
    access_token: str,
    room_id: str,
    done: Callable[[list[nio.Event]], bool],
) -> tuple[list[nio.Event], str]:
    """The parsed timeline, and the bot's name as nio would display it."""
    # Explicitly off: whether or not nio's crypto dependencies happen to be
    # installed, this client should behave like a plain, unencrypted one.
    config = nio.AsyncClientConfig(encryption_enabled=False)
    client = nio.AsyncClient(base_url, user_id, device_id=device_id, config=config)
    try:
        client.restore_login(user_id, device_id, access_token)
        events = await sync_room_until(client, room_id, done)
        bots = [e.sender for e in events if POINTER in content_of(e)]
        bot_name = client.rooms[room_id].user_name(bots[0]) if bots else ""
        return events, bot_name or ""
    finally:
        await client.close()


def test_nio_reads_pointers_replies_and_edits(homeserver: Homeserver) -> None:
    # The bot's rendering (name in the text, per-message profile) as nio reads it.
    pair = connected_pair(homeserver, senders="bot")
    message = pair.alice.send_message(pair.room_a, "hello from A")
    reply = pair.alice.send_message(
        pair.room_a, "and a reply", **{"m.relates_to": {"m.in_reply_to": {"event_id": message}}}
    )
    new_text = unique("edited hello")
    edit = pair.alice.send_event(
        pair.room_a,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": f"* {new_text}",
            "m.new_content": {"msgtype": "m.text", "body": new_text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": message},
        },
    )

    bob = pair.bob
    assert bob.access_token is not None
    assert bob.user_id is not None
    device_id: str = bob.whoami()["device_id"]
    events, bot_name = asyncio.run(
        read_with_nio(
            homeserver.client_url,
            bob.user_id,
            device_id,
            bob.access_token,
            pair.room_b,
            lambda seen: all(pointer_to(seen, e) is not None for e in (message, reply, edit)),
        )
    )
    pointer = pointer_to(events, message)
    reply_pointer = pointer_to(events, reply)
    edit_pointer = pointer_to(events, edit)
    assert pointer is not None
    assert reply_pointer is not None
    assert edit_pointer is not None

    # All three are ordinary text messages from the bot to nio, with the
    # author's name in the readable body.
    for event, body in (
        (pointer, "Alice: hello from A"),
        (reply_pointer, "Alice: and a reply"),
        (edit_pointer, f"* Alice edited: {new_text}"),
    ):
        assert isinstance(event, nio.RoomMessageText), event
        assert event.sender == pair.bot
        assert event.body == body
        assert event.format == "org.matrix.custom.html"
        assert event.formatted_body is not None
        # The edit's own fallback names who edited; only pointers carry a profile.
        assert ("data-mx-profile-fallback" in event.formatted_body) == (event is not edit_pointer)
    # The name nio would show next to them: the bot's display name.
    assert bot_name == "Room connections"

    # The machine-readable parts survive nio's parsing in the event's source.
    content = content_of(pointer)
    assert content[PROFILE] == {
        "id": pair.alice.user_id,
        "displayname": "Alice",
        "has_fallback": True,
    }
    assert content[POINTER]["room_id"] == pair.room_a
    assert content[POINTER]["sender"] == pair.alice.user_id
    assert content_of(reply_pointer)[POINTER]["event_id"] == reply
    assert content_of(reply_pointer)[PROFILE]["id"] == pair.alice.user_id

    # The reply answers the pointer of the message it answered in room A.
    relates = content_of(reply_pointer)["m.relates_to"]
    assert relates["m.in_reply_to"]["event_id"] == pointer.event_id

    # The edit replaces that same pointer, with the new text re-rendered.
    edit_content = content_of(edit_pointer)
    assert edit_content["m.relates_to"] == {"rel_type": "m.replace", "event_id": pointer.event_id}
    assert edit_content["m.new_content"]["body"] == f"Alice: {new_text}"
    assert edit_content["m.new_content"][POINTER]["event_id"] == message
    assert edit_content[POINTER]["event_id"] == edit

    # The expansion rides along in unsigned for clients that want the original.
    original = pointer.source["unsigned"][ORIGINAL]
    assert original["event_id"] == message
    assert original["sender"] == pair.alice.user_id
