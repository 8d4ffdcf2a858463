"""The module in a worker deployment: it acts exactly once, on one process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

from harness.connect_api import connect, connections, notices_from, unique, wait_for_notice
from harness.ferry_helpers import (
    POINTER,
    barrier,
    connected_pair,
    pointers_in,
    send_edit,
    wait_for_pointer,
)
from harness.postgres import PostgresServer
from harness.redis import RedisServer
from harness.workers import CLIENT_WORKER, WorkerDeployment

pytestmark = pytest.mark.workers

ORIGINAL = "org.matrix.msc2923.original"


def test_handshake_side_effects_happen_exactly_once(
    workers: WorkerDeployment, postgres: PostgresServer
) -> None:
    """The module is loaded on all three processes; only main (the configured
    acting process) may announce, join and cache."""
    bot = workers.info()["bot_user_id"]
    alice = workers.register(unique("alice"))
    bob = workers.register(unique("bob"))
    room_a = alice.create_room(name="A")
    room_b = bob.create_room(name="B")

    # Requests go through the client worker; the persister writes the state.
    assert connect(alice, room_a, room_b)["status"] == "requested"
    assert connect(bob, room_b, room_a)["status"] == "active"
    wait_for_notice(alice, room_a, bot, "now connected")
    wait_for_notice(bob, room_b, bot, "now connected")

    # A marker sent after the notices: once it is visible, any duplicate
    # notice a second process might have sent would be visible too.
    marker = alice.send_message(room_a, "marker")
    alice.wait_for_event(room_a, lambda e: e.get("event_id") == marker)
    notices_a = notices_from(alice, room_a, bot)
    assert sum("Requested a connection" in n for n in notices_a) == 1
    assert sum("now connected" in n for n in notices_a) == 1
    assert sum("now connected" in n for n in notices_from(bob, room_b, bot)) == 1
    assert connections(alice, room_a)[room_b]["status"] == "active"

    rows = postgres.query(
        workers.database_name,
        "SELECT room_id, other_room_id, status FROM room_connect_connections"
        " WHERE room_id IN (%s, %s)",
        (room_a, room_b),
    )
    assert sorted(rows) == sorted([(room_a, room_b, "active"), (room_b, room_a, "active")])
    bot_joins = postgres.query(
        workers.database_name,
        "SELECT count(*) FROM room_memberships WHERE user_id = %s AND membership = 'join'"
        " AND room_id IN (%s, %s)",
        (bot, room_a, room_b),
    )
    assert bot_joins == [(2,)]
    # A message through the client worker is ferried once, by main.
    hello = alice.send_message(room_a, "hello via the client worker")
    wait_for_pointer(bob, room_b, hello)
    barrier(bob, room_b)
    ferried = [p["content"][POINTER]["event_id"] for p in pointers_in(bob, room_b)]
    assert ferried.count(hello) == 1
    assert postgres.query(
        workers.database_name,
        "SELECT count(*) FROM room_connect_pointers WHERE source_event_id = %s",
        (hello,),
    ) == [(1,)]
    assert "Connection " in workers.log_text("main")
    for process in ("event_persister", "client_worker"):
        assert "Connection " not in workers.log_text(process)


def test_expansion_cache_is_invalidated_on_the_client_worker(workers: WorkerDeployment) -> None:
    """The client worker serves the expansion from its own cache; an edit
    persisted by the event persister must still show up there at once."""
    bot = workers.info()["bot_user_id"]
    alice = workers.register(unique("alice"))
    bob = workers.register(unique("bob"))
    room_a, room_b = alice.create_room(name="A"), bob.create_room(name="B")
    connect(alice, room_a, room_b)
    connect(bob, room_b, room_a)
    wait_for_notice(bob, room_b, bot, "now connected")
    sent = alice.send_message(room_a, "v1")
    pointer = wait_for_pointer(bob, room_b, sent)
    pointer_id = quote(pointer["event_id"], safe="")
    path = f"/_matrix/client/v3/rooms/{quote(room_b, safe='')}/event/{pointer_id}"
    assert bob.request("GET", path)["unsigned"][ORIGINAL]["content"]["body"] == "v1"
    send_edit(alice, room_a, sent, "v2")
    barrier(alice, room_a)
    assert bob.request("GET", path)["unsigned"][ORIGINAL]["content"]["body"] == "v2"


def test_a_client_worker_can_be_the_acting_process(
    harness_dir: Path, postgres: PostgresServer, redis: RedisServer
) -> None:
    """``worker: client_worker``: that worker announces and ferries (a burst,
    in batches it hands to the event persister), main does nothing."""
    deployment = WorkerDeployment(
        postgres, redis, {"worker": CLIENT_WORKER}, base_dir=harness_dir, name="acting-worker"
    )
    try:
        deployment.start()
        pair = connected_pair(deployment)
        with ThreadPoolExecutor(max_workers=2) as pool:
            sent = list(
                pool.map(lambda n: pair.alice.send_message(pair.room_a, f"burst {n}"), range(20))
            )
        for event_id in sent:
            wait_for_pointer(pair.bob, pair.room_b, event_id)
        barrier(pair.bob, pair.room_b)
        originals = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
        assert sorted(o for o in originals if o in sent) == sorted(sent)
        rows = postgres.query(
            deployment.database_name,
            "SELECT count(*), count(DISTINCT source_event_id) FROM room_connect_pointers"
            " WHERE source_room_id = %s",
            (pair.room_a,),
        )
        assert rows[0][0] == rows[0][1] >= len(sent)
        assert "Connection " in deployment.log_text(CLIENT_WORKER)
        assert "Connection " not in deployment.log_text("main")
    finally:
        deployment.destroy()
