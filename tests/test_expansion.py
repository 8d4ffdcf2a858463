"""Pointers expanded for clients in /sync, /messages, /context and /event."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from harness.client import JsonDict, MatrixClient, MatrixError
from harness.connect_api import CONNECTION, connect, unique, wait_for_notice
from harness.ferry_helpers import POINTER, barrier, connected_pair, send_edit, wait_for_pointer
from harness.synapse import Homeserver

ORIGINAL = "org.matrix.msc2923.original"


def event_via_api(client: MatrixClient, room_id: str, event_id: str) -> JsonDict:
    return client.request(
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/event/{quote(event_id, safe='')}",
    )


def context_of(client: MatrixClient, room_id: str, event_id: str) -> JsonDict:
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/context/{quote(event_id, safe='')}"
    event: JsonDict = client.request("GET", path, query={"limit": 0})["event"]
    return event


def from_messages(client: MatrixClient, room_id: str, event_id: str) -> JsonDict:
    chunk = client.messages(room_id, dir="b", limit=50)["chunk"]
    return next(e for e in chunk if e["event_id"] == event_id)


def test_pointer_carries_the_live_original_everywhere(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    sent = pair.alice.send_message(pair.room_a, "first version")
    in_sync = wait_for_pointer(pair.bob, pair.room_b, sent)
    original = in_sync["unsigned"][ORIGINAL]
    assert original["event_id"] == sent
    assert original["room_id"] == pair.room_a
    assert original["sender"] == pair.alice.user_id
    assert original["type"] == "m.room.message"
    assert original["content"] == {"msgtype": "m.text", "body": "first version"}
    assert isinstance(original["origin_server_ts"], int)
    pointer_id = in_sync["event_id"]
    for served in (
        event_via_api(pair.bob, pair.room_b, pointer_id),
        context_of(pair.bob, pair.room_b, pointer_id),
        from_messages(pair.bob, pair.room_b, pointer_id),
    ):
        assert served["unsigned"][ORIGINAL]["content"]["body"] == "first version"

    edit = send_edit(pair.alice, pair.room_a, sent, "second version")
    barrier(pair.alice, pair.room_a)
    live = event_via_api(pair.bob, pair.room_b, pointer_id)["unsigned"][ORIGINAL]
    assert live["content"]["body"] == "second version"
    assert live["edited"]["event_id"] == edit

    # Redacting the edit brings the first version back.
    pair.alice.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(pair.room_a, safe='')}/redact/{quote(edit, safe='')}/"
        + unique("txn"),
        {},
    )
    barrier(pair.alice, pair.room_a)
    reverted = event_via_api(pair.bob, pair.room_b, pointer_id)["unsigned"][ORIGINAL]
    assert reverted["content"]["body"] == "first version"
    assert "edited" not in reverted

    pair.alice.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(pair.room_a, safe='')}/redact/{quote(sent, safe='')}/"
        + unique("txn"),
        {},
    )
    # Until the redaction of the pointer by its sender (Alice's ghost) lands,
    # the expansion shows the original as redacted; after it, the pointer
    # itself is redacted.
    served = event_via_api(pair.bob, pair.room_b, pointer_id)
    if served["content"]:
        assert served["unsigned"][ORIGINAL]["redacted"] is True
        assert "body" not in served["unsigned"][ORIGINAL]["content"]
    pair.bob.wait_for_event(
        pair.room_b,
        lambda e: (
            e.get("type") == "m.room.redaction"
            and e.get("sender") == in_sync["sender"]
            and pointer_id in (e.get("redacts"), e.get("content", {}).get("redacts"))
        ),
    )
    served = event_via_api(pair.bob, pair.room_b, pointer_id)
    assert served["content"] == {}
    assert ORIGINAL not in served["unsigned"]


def test_plain_events_get_nothing_added(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    sent = pair.alice.send_message(pair.room_a, "plain")
    assert ORIGINAL not in event_via_api(pair.alice, pair.room_a, sent).get("unsigned", {})


def test_forged_pointers_are_not_expanded(homeserver: Homeserver) -> None:
    """A user of B crafts pointers naming events of a private room: nothing of
    that room may leak through expansion."""
    pair = connected_pair(homeserver)
    victim = homeserver.register(unique("victim"))
    private = victim.create_room(name="private")
    secret = victim.send_message(private, "top secret")

    forged_private = pair.bob.send_message(
        pair.room_b,
        "look",
        **{POINTER: {"room_id": private, "event_id": secret, "sender": victim.user_id}},
    )
    # Naming a connected room but an event that is not in it.
    forged_elsewhere = pair.bob.send_message(
        pair.room_b,
        "look again",
        **{POINTER: {"room_id": pair.room_a, "event_id": secret, "sender": victim.user_id}},
    )
    # Right room, real event, but sent by bob rather than the ferry.
    real = pair.alice.send_message(pair.room_a, "real")
    wait_for_pointer(pair.bob, pair.room_b, real)
    forged_sender = pair.bob.send_message(
        pair.room_b,
        "impostor",
        **{POINTER: {"room_id": pair.room_a, "event_id": real, "sender": pair.alice.user_id}},
    )
    for forged in (forged_private, forged_elsewhere, forged_sender):
        unsigned = event_via_api(pair.bob, pair.room_b, forged).get("unsigned", {})
        assert unsigned[ORIGINAL]["placeholder"] is True
        assert "content" not in unsigned[ORIGINAL]
    assert "top secret" not in str(pair.bob.messages(pair.room_b, limit=50))


def test_revoked_connection_still_expands_what_was_shared(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    shared = pair.alice.send_message(pair.room_a, "shared while active")
    pointer = wait_for_pointer(pair.bob, pair.room_b, shared)
    pair.alice.send_state(pair.room_a, CONNECTION, pair.room_b, {})
    wait_for_notice(pair.bob, pair.room_b, pair.bot, "has ended")
    unsigned = event_via_api(pair.bob, pair.room_b, pointer["event_id"])["unsigned"]
    assert unsigned[ORIGINAL]["content"]["body"] == "shared while active"


def test_pointer_in_a_never_active_connection_is_a_placeholder(homeserver: Homeserver) -> None:
    """A pointer-shaped event from someone who is not a ferry, in a room whose
    connection is only requested, is a placeholder."""
    bot = homeserver.info()["bot_user_id"]
    alice = homeserver.register(unique("alice"))
    bob = homeserver.register(unique("bob"))
    room_a, room_b = alice.create_room(), bob.create_room()
    connect(alice, room_a, room_b)
    wait_for_notice(alice, room_a, bot, "Requested a connection")
    secret = alice.send_message(room_a, "not shared: only requested")
    forged = bob.send_message(
        room_b, "x", **{POINTER: {"room_id": room_a, "event_id": secret, "sender": alice.user_id}}
    )
    unsigned = event_via_api(bob, room_b, forged)["unsigned"]
    assert unsigned[ORIGINAL] == {
        "placeholder": True,
        "room_id": room_a,
        "via": [homeserver.server_name],
    }


def merged(client: MatrixClient, room_id: str, **query: str) -> JsonDict:
    path = f"/_synapse/client/org.matrix.msc2923/rooms/{quote(room_id, safe='')}/messages"
    return client.request("GET", path, query={"dir": "b", "limit": "50", **query})


def test_merged_timeline_replaces_pointers_per_reader(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    hello = pair.alice.send_message(pair.room_a, "hello B")
    pointer = wait_for_pointer(pair.bob, pair.room_b, hello)

    page = merged(pair.bob, pair.room_b)
    assert {"chunk", "start", "end"} <= set(page)
    by_id = {e["event_id"]: e for e in page["chunk"]}
    assert pointer["event_id"] not in by_id
    shown = by_id[hello]
    assert shown["room_id"] == pair.room_a
    assert shown["content"]["body"] == "hello B"
    assert shown["unsigned"][POINTER] == {"room_id": pair.room_b, "event_id": pointer["event_id"]}

    # A forged pointer to a private room: shown only to a reader of that room.
    victim = homeserver.register(unique("victim"))
    private = victim.create_room(name="private")
    secret = victim.send_message(private, "top secret")
    pair.bob.invite(pair.room_b, victim.user_id or "")
    victim.join(pair.room_b)
    forged = pair.bob.send_message(
        pair.room_b,
        "look",
        **{POINTER: {"room_id": private, "event_id": secret, "sender": victim.user_id}},
    )
    for_bob = {e["event_id"]: e for e in merged(pair.bob, pair.room_b)["chunk"]}
    assert secret not in for_bob
    assert for_bob[forged]["unsigned"][ORIGINAL]["placeholder"] is True
    assert "top secret" not in str(for_bob)
    for_victim = {e["event_id"]: e for e in merged(victim, pair.room_b)["chunk"]}
    assert for_victim[secret]["content"]["body"] == "top secret"

    outsider = homeserver.register(unique("outsider"))
    with pytest.raises(MatrixError) as info:
        merged(outsider, pair.room_b)
    assert info.value.errcode == "M_FORBIDDEN"

    # Pagination tokens work like /messages.
    first = merged(pair.bob, pair.room_b, limit="2")
    assert len(first["chunk"]) == 2
    second = merged(pair.bob, pair.room_b, limit="2", **{"from": first["end"]})
    assert {e["event_id"] for e in first["chunk"]}.isdisjoint(
        e["event_id"] for e in second["chunk"]
    )
