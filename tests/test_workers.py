"""The module in a worker deployment: it acts exactly once, on one process."""

from __future__ import annotations

import pytest

from tests.connect_api import connect, connections, notices_from, unique, wait_for_notice
from tests.ferry_helpers import POINTER, barrier, pointers_in, wait_for_pointer
from tests.harness.postgres import PostgresServer
from tests.harness.workers import WorkerDeployment

pytestmark = pytest.mark.workers


def test_handshake_side_effects_happen_exactly_once(
    workers: WorkerDeployment, postgres: PostgresServer
) -> None:
    """on_new_event runs on all three processes; only main (the configured
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
