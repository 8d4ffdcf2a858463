"""Exactly once under a crash and under revocation, on a real homeserver."""

from __future__ import annotations

import sqlite3
import threading
from urllib.parse import quote

from harness.client import MatrixClient, MatrixError
from harness.connect_api import CONNECTION, connect, revoke, unique, wait_for_notice
from harness.ferry_helpers import (
    POINTER,
    Pair,
    all_events,
    barrier,
    connected_pair,
    pointers_in,
    wait_for_pointer,
)
from harness.synapse import Homeserver, HomeserverFactory

BURST = 500
KILL_AFTER = 200


def send_with_txn(client: MatrixClient, room_id: str, txn_id: str, body: str) -> str:
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/send/m.room.message/{txn_id}"
    event_id: str = client.request("PUT", path, {"msgtype": "m.text", "body": body})["event_id"]
    return event_id


def test_kill_9_mid_burst_loses_and_duplicates_nothing(make_homeserver: HomeserverFactory) -> None:
    hs = make_homeserver(name="crash")
    pair = connected_pair(hs)
    server_up = threading.Event()
    server_up.set()
    progress = threading.Condition()
    sent: list[str] = []
    errors: list[BaseException] = []

    def burst() -> None:
        try:
            for i in range(BURST):
                while True:
                    server_up.wait()
                    try:
                        # Retrying with the same transaction ID is what a real
                        # client does; Synapse answers with the stored event.
                        event_id = send_with_txn(
                            pair.alice, pair.room_a, f"burst-{i}", f"burst {i}"
                        )
                        break
                    except (OSError, MatrixError):
                        continue
                with progress:
                    sent.append(event_id)
                    progress.notify_all()
        except BaseException as e:  # surfaced by the main thread
            errors.append(e)

    sender = threading.Thread(target=burst, name="burst")
    sender.start()
    with progress:
        assert progress.wait_for(lambda: len(sent) >= KILL_AFTER or errors, timeout=120)
    server_up.clear()
    hs.kill()
    sent_at_kill = len(sent)
    db = sqlite3.connect(hs.directory / "homeserver.db")
    try:
        [(ferried_before_crash,)] = db.execute("SELECT count(*) FROM room_connect_pointers")
    finally:
        db.close()
    hs.start()
    server_up.set()
    sender.join(timeout=300)
    assert not sender.is_alive()
    assert errors == []
    assert len(sent) == BURST
    assert len(set(sent)) == BURST

    wait_for_pointer(pair.bob, pair.room_b, sent[-1], timeout=180)
    ferried = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    assert ferried == sent  # each exactly once, in order
    # The crash cut the burst: what the ferry had recorded then is at most what
    # had been sent, and everything after came from catch-up.
    assert ferried_before_crash <= sent_at_kill < BURST


def witness_room(homeserver: Homeserver, pair: Pair) -> tuple[MatrixClient, str]:
    """Room C, connected to A throughout: the ferry carrying A's later
    messages into C shows that it read them and chose not to carry them to B."""
    carol = homeserver.register(unique("carol"), displayname="Carol")
    room_c = carol.create_room(name=unique("C"))
    connect(pair.alice, pair.room_a, room_c)
    assert connect(carol, room_c, pair.room_a)["status"] == "active"
    wait_for_notice(carol, room_c, pair.bot, "now connected")
    return carol, room_c


def test_revocation_mid_burst_stops_ferrying(homeserver: Homeserver) -> None:
    before_count, after_count = 40, 40
    pair = connected_pair(homeserver)
    carol, room_c = witness_room(homeserver, pair)

    before = [pair.alice.send_message(pair.room_a, f"before {i}") for i in range(before_count)]
    # Waits, so the partition does not depend on how far the ferry had got:
    # the first half has crossed before the revocation is sent, and the
    # revocation has been processed (the bot says so) before the second half.
    wait_for_pointer(pair.bob, pair.room_b, before[-1])
    revoke(pair.alice, pair.room_a, pair.room_b)
    wait_for_notice(pair.alice, pair.room_a, pair.bot, "has ended")
    after = [pair.alice.send_message(pair.room_a, f"after {i}") for i in range(after_count)]
    wait_for_pointer(carol, room_c, after[-1])
    barrier(pair.bob, pair.room_b)

    # The revocation sits in A's timeline between the two halves.
    timeline = list(all_events(pair.alice, pair.room_a))
    [revocation] = [
        i
        for i, e in enumerate(timeline)
        if e["type"] == CONNECTION and e.get("state_key") == pair.room_b and e["content"] == {}
    ]
    messages = [
        (i, e["event_id"])
        for i, e in enumerate(timeline)
        if e["type"] == "m.room.message" and e["sender"] == pair.alice.user_id
    ]
    assert [event_id for i, event_id in messages if i < revocation] == before
    assert [event_id for i, event_id in messages if i > revocation] == after

    into_b = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    into_c = [p["content"][POINTER]["event_id"] for p in pointers_in(carol, room_c)]
    # Everything before the revocation crossed once, in order; nothing after it.
    assert into_b == before
    assert into_c == before + after


def test_messages_right_after_a_revocation_in_the_other_room_never_cross(
    homeserver: Homeserver,
) -> None:
    pair = connected_pair(homeserver)
    carol, room_c = witness_room(homeserver, pair)
    first = pair.alice.send_message(pair.room_a, "before")
    wait_for_pointer(pair.bob, pair.room_b, first)

    # A busy server: reconciliation has a queue of requests to work through
    # (each a join and notices), so it reaches B's revocation late.
    dave = homeserver.register(unique("dave"))
    rooms = [dave.create_room(name=unique("busy")) for _ in range(12)]
    elsewhere = dave.create_room(name=unique("elsewhere"))
    for room in rooms:
        connect(dave, room, elsewhere)

    # B's admin withdraws with a plain state event, and A's messages follow
    # at once, without waiting for the bot: the ferry may read them before
    # reconciliation has processed the revocation.
    state = f"/_matrix/client/v3/rooms/{quote(pair.room_b, safe='')}/state"
    pair.bob.request("PUT", f"{state}/{CONNECTION}/{quote(pair.room_a, safe='')}", {})
    after = [pair.alice.send_message(pair.room_a, f"right after {i}") for i in range(10)]
    wait_for_pointer(carol, room_c, after[-1])
    wait_for_notice(pair.bob, pair.room_b, pair.bot, "has ended")
    barrier(pair.bob, pair.room_b)

    into_b = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    assert into_b == [first]


def test_restart_resumes_without_resending(make_homeserver: HomeserverFactory) -> None:
    hs = make_homeserver(name="resume")
    pair = connected_pair(hs)
    first = pair.alice.send_message(pair.room_a, "before restart")
    wait_for_pointer(pair.bob, pair.room_b, first)
    hs.restart()
    second = pair.alice.send_message(pair.room_a, unique("after restart"))
    wait_for_pointer(pair.bob, pair.room_b, second)
    ferried = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    assert ferried == [first, second]
