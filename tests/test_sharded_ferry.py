"""The ferry sharded over two workers (``worker: [ferry1, ferry2]``).

One deployment on PostgreSQL and Redis: main, event persister, client worker
and two generic workers the module's ``worker`` option names. Which process
carried a pointer is read from each process's own Prometheus counter
(``synapse_room_connect_ferried_events_total``, per process since each
process has its own registry): it must match the hash's choice exactly.
"""

from __future__ import annotations

import itertools
import re
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.client import MatrixClient
from harness.connect_api import connect, revoke, unique, wait_for_notice
from harness.ferry_helpers import (
    POINTER,
    Pair,
    all_events,
    connected_pair,
    is_pointer_to,
    wait_for_pointer,
)
from harness.postgres import PostgresServer
from harness.redis import RedisServer
from harness.workers import WorkerDeployment
from synapse_room_connect.constants import DEFAULT_GHOST_LOCALPART_PREFIX
from synapse_room_connect.core.ghosts import GhostNamespace
from synapse_room_connect.core.sharding import FerryInstances

pytestmark = pytest.mark.workers

FERRY1, FERRY2 = "ferry1", "ferry2"
FERRIED = "synapse_room_connect_ferried_events_total"
PAIRS = 6
# Generous: a restarted worker first starts Synapse; this bounds a hang only.
LANDING_TIMEOUT = 180


@pytest.fixture(scope="module")
def sharded(
    harness_dir: Path, postgres: PostgresServer, redis: RedisServer
) -> Iterator[WorkerDeployment]:
    deployment = WorkerDeployment(
        postgres,
        redis,
        {"worker": [FERRY1, FERRY2]},
        base_dir=harness_dir,
        name="sharded-ferry",
        ferry_workers=(FERRY1, FERRY2),
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.destroy()


@pytest.fixture(scope="module")
def pairs(sharded: WorkerDeployment) -> list[Pair]:
    """Connected pairs, at least one carried by each ferry worker."""
    instances = FerryInstances((FERRY1, FERRY2))
    made: list[Pair] = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        while len(made) < PAIRS or len({owner(instances, p) for p in made}) < 2:
            made.extend(pool.map(lambda _: connected_pair(sharded), range(3)))
    return made


def owner(instances: FerryInstances, pair: Pair) -> str:
    return instances.owner(pair.room_a, pair.room_b)


def counted(deployment: WorkerDeployment, process: str, metric: str) -> float:
    """All samples of ``metric`` on this process, since it started."""
    url = deployment.metrics_urls[process]
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    pattern = re.compile(rf"^{metric}{{[^}}]*}} (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def ferried_by(deployment: WorkerDeployment, process: str) -> float:
    """Pointers (and other counterparts) this process sent since it started."""
    return counted(deployment, process, FERRIED)


def ferry_failures(deployment: WorkerDeployment, process: str) -> float:
    return counted(deployment, process, "synapse_room_connect_ferry_failures_total")


def send_burst(pair: Pair, label: str, count: int, sent: threading.Semaphore) -> list[str]:
    ids = []
    for n in range(count):
        ids.append(pair.alice.send_message(pair.room_a, f"{label} {n}"))
        sent.release()
    return ids


def land(pairs: Sequence[Pair], sent: Sequence[Sequence[str]]) -> None:
    """Wait for each pair's last pointer: the ferry keeps order per connection,
    so the others are in before it."""
    for pair, ids in zip(pairs, sent, strict=True):
        wait_for_pointer(pair.bob, pair.room_b, ids[-1], timeout=LANDING_TIMEOUT)


def check_exactly_once_in_order(pair: Pair, label: str) -> int:
    """Every original labelled ``label`` in room A has one pointer in room B,
    and the pointers come in the originals' order. Returns how many."""
    originals = [
        e["event_id"]
        for e in all_events(pair.alice, pair.room_a)
        if e.get("sender") == pair.alice.user_id
        and str(e.get("content", {}).get("body", "")).startswith(f"{label} ")
    ]
    wanted = set(originals)
    pointed = [
        e["content"][POINTER]["event_id"]
        for e in all_events(pair.bob, pair.room_b)
        if POINTER in e.get("content", {}) and e["content"][POINTER]["event_id"] in wanted
    ]
    assert pointed == originals, f"{pair.room_a} -> {pair.room_b}"
    return len(originals)


def sends_in_each(pairs: Sequence[Pair], label: str, count: int) -> list[list[str]]:
    """``count`` messages in each pair's room A, the pairs in parallel."""
    sent = threading.Semaphore(0)
    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        return list(pool.map(lambda p: send_burst(p, label, count, sent), pairs))


def expected_share(pairs: Sequence[Pair], worker: list[str], per_pair: int) -> dict[str, int]:
    instances = FerryInstances(tuple(worker))
    share = {FERRY1: 0, FERRY2: 0}
    for pair in pairs:
        share[owner(instances, pair)] += per_pair
    return share


def test_kill_9_of_a_ferry_worker_mid_burst_loses_and_doubles_nothing(
    sharded: WorkerDeployment, pairs: list[Pair], postgres: PostgresServer
) -> None:
    per_pair = 12
    label = unique("burst")
    before = {name: ferried_by(sharded, name) for name in (FERRY1, FERRY2)}
    sent_count = threading.Semaphore(0)
    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        futures = [pool.submit(send_burst, p, label, per_pair, sent_count) for p in pairs]
        # Mid-burst: a third of the messages are out when ferry2 dies.
        for _ in range(len(pairs) * per_pair // 3):
            assert sent_count.acquire(timeout=120)
        sharded.processes[FERRY2].kill()
        sent = [f.result() for f in futures]
    sharded.processes[FERRY2].start(120)
    land(pairs, sent)

    for pair in pairs:
        assert check_exactly_once_in_order(pair, label) == per_pair
    rows = postgres.query(
        sharded.database_name,
        "SELECT count(*), count(DISTINCT (source_event_id, target_room_id))"
        " FROM room_connect_pointers WHERE source_room_id = ANY(%s)",
        ([p.room_a for p in pairs],),
    )
    assert rows[0][0] == rows[0][1]
    # ferry1 ran throughout: it sent exactly its share, ferry2 none of it.
    share = expected_share(pairs, [FERRY1, FERRY2], per_pair)
    assert ferried_by(sharded, FERRY1) - before[FERRY1] == share[FERRY1]
    # ferry2's counter restarted with it: what it sent after the restart.
    assert ferried_by(sharded, FERRY2) <= share[FERRY2]
    for process in ("main", "client_worker", "event_persister"):
        assert ferried_by(sharded, process) == 0


def test_a_ferry_worker_that_does_not_coordinate_follows_connection_changes(
    sharded: WorkerDeployment, pairs: list[Pair]
) -> None:
    """ferry2 never reconciles, and its feed may read a connection event
    before ferry1 has reconciled it: it must still start carrying a
    connection made while it runs, and stop carrying one revoked meanwhile."""
    instances = FerryInstances((FERRY1, FERRY2))
    fresh = connected_pair(sharded)
    while owner(instances, fresh) != FERRY2:
        fresh = connected_pair(sharded)
    hello = fresh.alice.send_message(fresh.room_a, "carried by ferry2")
    wait_for_pointer(fresh.bob, fresh.room_b, hello, timeout=LANDING_TIMEOUT)

    failures = ferry_failures(sharded, FERRY2)
    revoke(fresh.alice, fresh.room_a, fresh.room_b)
    wait_for_notice(fresh.bob, fresh.room_b, fresh.bot, "has ended", timeout=60)
    late = fresh.alice.send_message(fresh.room_a, "after the revocation")
    # A later message on another connection of ferry2: once its pointer is
    # in, ferry2 has read past ``late``.
    other = next(p for p in pairs if owner(instances, p) == FERRY2)
    probe = other.alice.send_message(other.room_a, "probe")
    wait_for_pointer(other.bob, other.room_b, probe, timeout=LANDING_TIMEOUT)
    assert not any(is_pointer_to(e, late) for e in all_events(fresh.bob, fresh.room_b))
    # Nor did it try and fail (the bot has left room B).
    assert ferry_failures(sharded, FERRY2) == failures


def mesh_rooms(sharded: WorkerDeployment, alice: MatrixClient) -> tuple[str, str, str]:
    """Rooms A, B, C whose connections A-B and B-C ferry1 carries, A-C ferry2."""
    instances = FerryInstances((FERRY1, FERRY2))
    rooms: list[str] = []
    while True:
        rooms.append(alice.create_room(name=unique("mesh")))
        for a, b, c in itertools.permutations(rooms, 3):
            owners = (instances.owner(a, b), instances.owner(b, c), instances.owner(a, c))
            if owners == (FERRY1, FERRY1, FERRY2):
                return a, b, c


def test_a_reaction_in_a_mesh_waits_for_the_pointer_the_other_worker_carries(
    sharded: WorkerDeployment,
) -> None:
    """A, B and C all connected. With ferry2 (A-C) down, A's message reaches
    B only; a reaction and a reply to its pointer in B must wait until ferry2
    has carried the message into C and then relate to that pointer, rather
    than cross without their relation."""
    bot: str = sharded.info()["bot_user_id"]
    alice = sharded.register(unique("alice"), displayname="Alice")
    a, b, c = mesh_rooms(sharded, alice)
    for x, y in ((a, b), (b, c), (a, c)):
        connect(alice, x, y)
        assert connect(alice, y, x)["status"] == "active"
    for room in (a, b, c):
        # Two connections each: this client returns a notice once only.
        for _ in range(2):
            wait_for_notice(alice, room, bot, "now connected", timeout=60)

    sharded.processes[FERRY2].kill()
    message = alice.send_message(a, "said in A")
    in_b = wait_for_pointer(alice, b, message, timeout=LANDING_TIMEOUT)["event_id"]
    relates = {"rel_type": "m.annotation", "event_id": in_b, "key": "+1"}
    alice.send_event(b, "m.reaction", {"m.relates_to": relates})
    reply = {"msgtype": "m.text", "body": "answered in B"}
    reply["m.relates_to"] = {"m.in_reply_to": {"event_id": in_b}}  # type: ignore[assignment]
    answer = alice.send_event(b, "m.room.message", reply)
    sharded.processes[FERRY2].start(120)

    in_c = wait_for_pointer(alice, c, message, timeout=LANDING_TIMEOUT)["event_id"]
    answer_in_c = wait_for_pointer(alice, c, answer, timeout=LANDING_TIMEOUT)
    assert answer_in_c["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == in_c
    # Alice's ghost of room B reacts in C for her.
    ghost = GhostNamespace(DEFAULT_GHOST_LOCALPART_PREFIX, sharded.server_name).user_id_for(
        alice.user_id or "", b
    )
    reaction = alice.wait_for_event(
        c,
        lambda e: e.get("type") == "m.reaction" and e.get("sender") == ghost,
        LANDING_TIMEOUT,
        description="the reaction carried into C",
    )
    assert reaction["content"]["m.relates_to"]["event_id"] == in_c


def test_changing_the_list_moves_connections_with_nothing_lost_or_doubled(
    sharded: WorkerDeployment, pairs: list[Pair]
) -> None:
    """From two ferry workers to one, to two again and back to one, with a
    full stop: stop every ferry process, change the list, start them all (a
    rolling restart: test_rolling_restart.py). The messages of each phase are
    sent while the ferry is stopped, so the new owner carries what the old one
    never saw."""
    per_pair = 4
    labels = []
    for worker in ([FERRY1], [FERRY1, FERRY2], [FERRY1]):
        for process in sharded.ferry_worker_procs:
            process.stop()
        label = unique("phase")
        labels.append(label)
        sent = sends_in_each(pairs, label, per_pair)
        sharded.reconfigure({"worker": worker})
        for process in sharded.ferry_worker_procs:
            process.spawn()
        for process in sharded.ferry_worker_procs:
            process.wait_healthy(120)
        land(pairs, sent)
        share = expected_share(pairs, worker, per_pair)
        # Counters start at 0 with each restart: each process sent exactly
        # the connections the list gives it, and nothing else.
        assert {name: ferried_by(sharded, name) for name in (FERRY1, FERRY2)} == share
    for pair in pairs:
        for label in labels:
            assert check_exactly_once_in_order(pair, label) == per_pair
