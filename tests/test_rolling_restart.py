"""A rolling restart of the ferry workers while the list changes, under a burst.

One deployment on PostgreSQL and Redis with three ferry workers running;
the module's ``worker`` list names two of them, then all three, then two
again. Each change is made as docs/admin.md says: rewrite the list, then
restart the processes one at a time, so for a while processes with the old
list and the new one run together and both take some connections for
their own; one of them is killed with -9 in the middle. Throughout, every
pair's room A gets messages, replies, reactions and edits.

What must hold: every original has exactly one counterpart in its pair's
room B, in order, and no event of any room B names a predecessor (a
``prev_event``) that Synapse never stored: the hole in the room's graph
that two processes sending for one connection at once left behind.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import attrs
import pytest

from harness.connect_api import unique
from harness.ferry_helpers import POINTER, Pair, all_events, connected_pair, send_edit
from harness.postgres import PostgresServer
from harness.redis import RedisServer
from harness.workers import WorkerDeployment
from synapse_room_connect.core.sharding import FerryInstances

pytestmark = pytest.mark.workers

FERRY1, FERRY2, FERRY3 = "ferry1", "ferry2", "ferry3"
TWO: Final = (FERRY1, FERRY2)
THREE: Final = (FERRY1, FERRY2, FERRY3)
PAIRS: Final = 6
# Between two sends of one pair: the burst spans every restart without
# burying two cores under more than the ferry's processes can carry.
PAUSE_S: Final = 0.25
# Bounds a hang only: a killed worker's connections wait out its lease.
LANDING_TIMEOUT: Final = 300
START_TIMEOUT: Final = 120


@pytest.fixture(scope="module")
def rolling(
    harness_dir: Path, postgres: PostgresServer, redis: RedisServer
) -> Iterator[WorkerDeployment]:
    deployment = WorkerDeployment(
        postgres,
        redis,
        {"worker": list(TWO)},
        base_dir=harness_dir,
        name="rolling-ferry",
        ferry_workers=THREE,
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.destroy()


def make_pairs(deployment: WorkerDeployment) -> list[Pair]:
    """Pairs of which some move to ferry3 with three listed and some do not."""
    two, three = FerryInstances(TWO), FerryInstances(THREE)
    made: list[Pair] = []

    def moves(pair: Pair) -> bool:
        return two.owner(pair.room_a, pair.room_b) != three.owner(pair.room_a, pair.room_b)

    with ThreadPoolExecutor(max_workers=3) as pool:
        while (
            len(made) < PAIRS
            or not any(moves(p) for p in made)
            or all(moves(p) for p in made)
            or {three.owner(p.room_a, p.room_b) for p in made} != set(THREE)
        ):
            made.extend(pool.map(lambda _: connected_pair(deployment), range(3)))
    return made


@attrs.frozen
class Sent:
    """What one pair's room A got, in order."""

    # Messages, replies and edits: each has a pointer in room B.
    pointed: tuple[str, ...]
    # (key, the original it reacts to, the reaction) of each reaction.
    reactions: tuple[tuple[str, str, str], ...]

    @property
    def event_ids(self) -> list[str]:
        return [*self.pointed, *(reaction for _, _, reaction in self.reactions)]

    @property
    def count(self) -> int:
        return len(self.pointed) + len(self.reactions)


def burst(pair: Pair, label: str, stop: threading.Event, started: threading.Semaphore) -> Sent:
    """Until ``stop``: a message, a reply to it, a reaction to it and an edit
    of it, over and over; a last message after ``stop``."""
    pointed: list[str] = []
    reactions: list[tuple[str, str, str]] = []
    last = ""
    n = 0
    while not stop.is_set():
        kind = n % 4
        if kind == 0:
            last = pair.alice.send_message(pair.room_a, f"{label} {n}")
            pointed.append(last)
        elif kind == 1:
            reply = {
                "msgtype": "m.text",
                "body": f"{label} {n} (a reply)",
                "m.relates_to": {"m.in_reply_to": {"event_id": last}},
            }
            pointed.append(pair.alice.send_event(pair.room_a, "m.room.message", reply))
        elif kind == 2:
            key = f"{label} {n}"
            relates = {"rel_type": "m.annotation", "event_id": last, "key": key}
            reaction = pair.alice.send_event(pair.room_a, "m.reaction", {"m.relates_to": relates})
            reactions.append((key, last, reaction))
        else:
            pointed.append(send_edit(pair.alice, pair.room_a, last, f"{label} {n} (edited)"))
        started.release()
        n += 1
        time.sleep(PAUSE_S)
    pointed.append(pair.alice.send_message(pair.room_a, f"{label} last"))
    return Sent(tuple(pointed), tuple(reactions))


def restart(deployment: WorkerDeployment, name: str) -> None:
    process = deployment.processes[name]
    process.stop()
    process.start(START_TIMEOUT)


def counterparts(pair: Pair, sent: Sent) -> tuple[list[str], Counter[str]]:
    """Room B's pointers to ``sent``'s originals, in order, and how many
    counterpart reactions (the bot's or the author's ghost's) per key are
    where they belong."""
    wanted = set(sent.pointed)
    pointer_of: dict[str, str] = {}
    pointed = []
    reactions: list[tuple[str, str]] = []
    for event in all_events(pair.bob, pair.room_b):
        content = event.get("content", {})
        original = content.get(POINTER, {}).get("event_id")
        if original in wanted:
            pointed.append(original)
            pointer_of.setdefault(original, event["event_id"])
        elif event.get("type") == "m.reaction":  # only counterparts react in B
            relates = content["m.relates_to"]
            reactions.append((relates["key"], relates["event_id"]))
    reacted = {key: original for key, original, _ in sent.reactions}
    placed = Counter(
        key
        for key, target in reactions
        if key in reacted and target == pointer_of.get(reacted[key])
    )
    return pointed, placed


def wait_landed(pair: Pair, sent: Sent) -> None:
    deadline = time.monotonic() + LANDING_TIMEOUT
    while True:
        pointed, _ = counterparts(pair, sent)
        if sent.pointed[-1] in pointed or time.monotonic() > deadline:
            return
        time.sleep(1)


def missing_predecessors(
    deployment: WorkerDeployment, postgres: PostgresServer, rooms: Sequence[str]
) -> list[tuple[str, str, str]]:
    """(room, event, prev_event) for every event of ``rooms`` whose
    prev_event Synapse never stored, from its database."""
    return [
        (str(r[0]), str(r[1]), str(r[2]))
        for r in postgres.query(
            deployment.database_name,
            "SELECT ev.room_id, edge.event_id, edge.prev_event_id FROM event_edges AS edge"
            " JOIN events AS ev ON ev.event_id = edge.event_id"
            " LEFT JOIN events AS prev ON prev.event_id = edge.prev_event_id"
            " WHERE prev.event_id IS NULL AND ev.room_id = ANY(%s)",
            (list(rooms),),
        )
    ]


def recorded_pointers(
    deployment: WorkerDeployment,
    postgres: PostgresServer,
    pairs: Sequence[Pair],
    sent: Sequence[Sent],
) -> int:
    """The module's pointer mappings for ``sent``'s originals."""
    rows = postgres.query(
        deployment.database_name,
        "SELECT count(*) FROM room_connect_pointers WHERE source_room_id = ANY(%s)"
        " AND source_event_id = ANY(%s)",
        ([p.room_a for p in pairs], [e for s in sent for e in s.event_ids]),
    )
    return int(rows[0][0])


def log_count(deployment: WorkerDeployment, needle: str) -> int:
    return sum(deployment.log_text(name).count(needle) for name in THREE)


@pytest.mark.timeout(1200)
def test_a_rolling_restart_from_two_ferry_workers_to_three_and_back_under_a_burst(
    rolling: WorkerDeployment, postgres: PostgresServer
) -> None:
    pairs = make_pairs(rolling)
    label = unique("rolling")
    stop = threading.Event()
    started = threading.Semaphore(0)

    def after_sends(count: int) -> None:
        for _ in range(count):
            assert started.acquire(timeout=120)

    with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
        futures = [pool.submit(burst, p, label, stop, started) for p in pairs]
        try:
            after_sends(len(pairs) * 4)
            rolling.reconfigure({"worker": list(THREE)})
            for name in ("main", FERRY3, FERRY1, FERRY2):
                restart(rolling, name)
                after_sends(len(pairs) * 2)
            # Mid-way, with connections just handed over: a crash.
            rolling.processes[FERRY2].kill()
            after_sends(len(pairs) * 2)
            rolling.processes[FERRY2].start(START_TIMEOUT)
            after_sends(len(pairs) * 2)
            rolling.reconfigure({"worker": list(TWO)})
            for name in (FERRY1, FERRY3, FERRY2):
                restart(rolling, name)
                after_sends(len(pairs) * 2)
        finally:
            stop.set()
        sent = [f.result() for f in futures]

    for pair, pair_sent in zip(pairs, sent, strict=True):
        wait_landed(pair, pair_sent)
    originals = sum(s.count for s in sent)
    doubled = missing = misplaced = 0
    for pair, pair_sent in zip(pairs, sent, strict=True):
        pointed, placed = counterparts(pair, pair_sent)
        appearances = Counter(pointed)
        doubled += sum(n - 1 for n in appearances.values() if n > 1)
        missing += len(set(pair_sent.pointed) - appearances.keys())
        misplaced += sum(1 for key, _, _ in pair_sent.reactions if placed[key] != 1)
        # Once each, in the originals' order.
        assert pointed == list(pair_sent.pointed), f"{pair.room_a} -> {pair.room_b}"
    recorded = recorded_pointers(rolling, postgres, pairs, sent)
    deadline = time.monotonic() + 60
    # The last pointer is visible a moment before its record is written.
    while recorded < originals and time.monotonic() < deadline:
        time.sleep(1)
        recorded = recorded_pointers(rolling, postgres, pairs, sent)
    holes = missing_predecessors(rolling, postgres, [p.room_b for p in pairs])
    events_in_b = postgres.query(
        rolling.database_name,
        "SELECT count(*) FROM events WHERE room_id = ANY(%s)",
        ([p.room_b for p in pairs],),
    )[0][0]
    print(
        f"originals sent: {originals} over {len(pairs)} pairs"
        f" ({sum(len(s.reactions) for s in sent)} reactions);"
        f" pointers recorded: {recorded}; events in the rooms B: {events_in_b};"
        f" doubled: {doubled}; missing: {missing}; reactions misplaced: {misplaced};"
        f" events naming a predecessor never stored: {len(holes)};"
        f" lease waits logged: {log_count(rolling, 'to let go of')};"
        f" take-overs logged: {log_count(rolling, 'Took over the ferry')};"
        f" passes stopped for a lost lease: {log_count(rolling, 'Ferry pass stopped')};"
        f" sends that outlasted their lease: {log_count(rolling, 'after its lease did')};"
        f" leases released at a stop: {log_count(rolling, 'Released the ferry')}"
    )
    assert not holes, holes[:10]
    assert (doubled, missing, misplaced) == (0, 0, 0)
    assert recorded == originals
