"""Ferry benchmark, part (g): what ghost senders cost, against the bot, in one run.

Two connected pairs on the server with the module, set up by the same two
people: in one the receiving room takes the default (each author's ghost
sends the counterparts), in the other its consent says ``"senders": "bot"``.
Bob, a member of both receiving rooms, long-polls ``/sync`` (the ferry
benchmark's ``Observer``). Each message is sent alone and waited for before
the next one (closed loop, a short pause between): the figures are the
latency of one message on an idle path, not queueing.

(g1) steady state: Alice, whose ghost already exists, sends into both source
     rooms in ABBA order (ghosts, bot, bot, ghosts, ...), so drift in the
     machine's load hits both paths alike; ratio of the p50s, target <= 1.05.
(g2) new authors: people who joined the ghost pair's source room and never
     wrote there send one message each, their ghost registered, invited,
     joined and then sending the pointer; interleaved ABBA with a message by
     Alice in the same room as the baseline; ratio of the p50s, target <= 3.

(g3) where the difference goes: blocks of messages on one path at a time
     (ABBA again), with Synapse's database transactions (every ``desc``) and
     its process CPU per counterpart read before and after each block, once
     the module is quiet. Counts, unlike the times, do not depend on the load.

Who sent each counterpart is counted too: the ghost derived from (author,
room) in the ghost pair, the bot in the other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from bench.ferry import (
    Http,
    LatencyStats,
    Observer,
    fmt,
    met,
    process_cpu_s,
    scrape_metrics,
    settled_cost,
    text,
)
from bench.servers import CLIENT_V3, BenchError
from harness.client import MatrixClient
from harness.connect_api import connect, unique, wait_for_notice
from harness.synapse import Homeserver
from synapse_room_connect.constants import DEFAULT_GHOST_LOCALPART_PREFIX
from synapse_room_connect.core.ghosts import GhostNamespace

GHOSTS_TARGET: Final = 1.05
FIRST_MESSAGE_TARGET: Final = 3.0
# After each pointer lands, the ferry still records its cursor: let it, so
# every message starts on an idle path.
PAUSE_S: Final = 0.05
ARRIVAL_TIMEOUT_S: Final = 60.0
CONNECT_TIMEOUT_S: Final = 60.0


@dataclass
class GhostRooms:
    bot: str
    namespace: GhostNamespace
    alice: MatrixClient  # writes in both source rooms
    bob: MatrixClient  # member of both receiving rooms: the observer
    ghosts_a: str
    ghosts_b: str
    bot_a: str
    bot_b: str
    newcomers: list[MatrixClient]


def set_up(hs: Homeserver, new_authors: int) -> GhostRooms:
    """Both pairs connected, and ``new_authors`` people joined to the ghost
    pair's source room who have not written there yet."""
    bot: str = hs.info()["bot_user_id"]
    alice = hs.register(unique("g-alice"), displayname="Alice")
    bob = hs.register(unique("g-bob"), displayname="Bob")
    # Private rooms, as most are: each ghost is invited by the bot.
    ghosts_a = alice.create_room(name=unique("A-ghosts"))
    ghosts_b = bob.create_room(name=unique("B-ghosts"))
    bot_a = alice.create_room(name=unique("A-bot"))
    bot_b = bob.create_room(name=unique("B-bot"))
    for room_a, room_b, chosen in ((ghosts_a, ghosts_b, {}), (bot_a, bot_b, {"senders": "bot"})):
        connect(alice, room_a, room_b, **chosen)
        status = connect(bob, room_b, room_a, **chosen).get("status")
        if status != "active":
            raise BenchError(f"the {chosen or 'default'} pair is {status!r} after both consents")
    for client, room in ((alice, ghosts_a), (bob, ghosts_b), (alice, bot_a), (bob, bot_b)):
        wait_for_notice(client, room, bot, "now connected", timeout=CONNECT_TIMEOUT_S)
    newcomers = []
    for i in range(new_authors):
        newcomer = hs.register(unique("g-new"), displayname=f"Newcomer {i}")
        alice.invite(ghosts_a, _user_id(newcomer))
        newcomer.join(ghosts_a)
        newcomers.append(newcomer)
    server_name = bot.partition(":")[2]
    namespace = GhostNamespace(DEFAULT_GHOST_LOCALPART_PREFIX, server_name)
    return GhostRooms(bot, namespace, alice, bob, ghosts_a, ghosts_b, bot_a, bot_b, newcomers)


def observed_senders(rooms: GhostRooms) -> dict[str, Callable[[str], bool]]:
    """What the observer counts in each receiving room: anything the ferry
    sent, by the bot or a ghost, so that a counterpart from the wrong one is
    counted as such rather than missed."""

    def ferry(sender: str) -> bool:
        return sender == rooms.bot or rooms.namespace.contains(sender)

    return {rooms.ghosts_b: ferry, rooms.bot_b: ferry}


@dataclass
class GhostCounts:
    """Who sent the counterparts the phase waited for."""

    steady_ghost_sends: int
    steady_ghost_by_own_ghost: int  # by the ghost of (Alice, ghost pair's source room)
    steady_bot_sends: int
    steady_bot_by_bot: int
    new_authors: int
    new_authors_by_own_ghost: int  # each by the ghost of (that newcomer, the room)
    new_author_ghosts: int  # distinct senders of the newcomers' counterparts


@dataclass
class PathCost:
    """What the server spent on a path's counterparts in (g3)."""

    pointers: int = 0
    cpu_s: float = 0.0
    txns: dict[str, float] = field(default_factory=dict)  # Synapse desc -> count

    def add(self, pointers: int, cpu_s: float, txns: dict[str, float]) -> None:
        self.pointers += pointers
        self.cpu_s += cpu_s
        for desc, count in txns.items():
            self.txns[desc] = self.txns.get(desc, 0.0) + count

    def per_pointer(self, desc: str | None = None) -> float:
        if not self.pointers:
            return math.nan
        if desc is None:
            return sum(self.txns.values()) / self.pointers
        return self.txns.get(desc, 0.0) / self.pointers


@dataclass
class GhostResult:
    rounds: int
    steady_ghosts: list[float]  # seconds, send -> pointer in /sync
    steady_bot: list[float]
    new_authors: list[float]
    new_baseline: list[float]  # Alice in the same room, interleaved with the newcomers
    counts: GhostCounts
    ghost_cost: PathCost
    bot_cost: PathCost


class _Timer:
    """Sends one tagged message and waits until the observer has seen its counterpart."""

    def __init__(self, observer: Observer) -> None:
        self._observer = observer

    def time(self, http_: Http, room_id: str, path: str, index: int) -> float:
        started = time.monotonic()
        http_.send(room_id, text(f"bench:{path}:{index}"))
        if self._observer.wait_for([(path, index)], ARRIVAL_TIMEOUT_S):
            raise BenchError(f"no counterpart of bench:{path}:{index} in {ARRIVAL_TIMEOUT_S} s")
        arrived = self._observer.arrival((path, index))
        assert arrived is not None
        time.sleep(PAUSE_S)
        return arrived - started


def run_ghosts(hs: Homeserver, rounds: int, new_authors: int, warmup: int) -> GhostResult:
    """Set up both pairs, then (g1) and (g2)."""
    rooms = set_up(hs, new_authors)
    assert rooms.bob.access_token is not None
    observer = Observer(hs.client_url, rooms.bob.access_token, observed_senders(rooms))
    observer.prime()
    observer.start()
    try:
        return _measure(hs, rooms, observer, rounds, warmup)
    finally:
        observer.stop()


def _measure(
    hs: Homeserver, rooms: GhostRooms, observer: Observer, rounds: int, warmup: int
) -> GhostResult:
    timer = _Timer(observer)
    alice = Http(hs.client_url, rooms.alice.access_token)
    paths = {"gg": rooms.ghosts_a, "gb": rooms.bot_a}
    try:
        # Warm-up: Alice's ghost is created here, and caches fill on both paths.
        for i in range(max(1, warmup)):
            timer.time(alice, rooms.ghosts_a, "gw", i)
            timer.time(alice, rooms.bot_a, "gv", i)
        steady: dict[str, list[float]] = {"gg": [], "gb": []}
        for i in range(rounds):
            for path in ("gg", "gb") if i % 2 == 0 else ("gb", "gg"):
                steady[path].append(timer.time(alice, paths[path], path, i))
        costs = _costs(hs, timer, alice, rooms, block=max(2, min(10, rounds // 30)))
        firsts: list[float] = []
        baseline: list[float] = []
        for j, newcomer in enumerate(rooms.newcomers):
            http_ = Http(hs.client_url, newcomer.access_token)
            try:
                # Connected beforehand, as Alice is: a TCP handshake is not the ghost's cost.
                http_.request("GET", f"{CLIENT_V3}/account/whoami")
                for step in ("new", "old") if j % 2 == 0 else ("old", "new"):
                    if step == "new":
                        firsts.append(timer.time(http_, rooms.ghosts_a, "gn", j))
                    else:
                        baseline.append(timer.time(alice, rooms.ghosts_a, "gs", j))
            finally:
                http_.close()
    finally:
        alice.close()
    observer.check()
    return GhostResult(
        rounds=rounds,
        steady_ghosts=steady["gg"],
        steady_bot=steady["gb"],
        new_authors=firsts,
        new_baseline=baseline,
        counts=_count(rooms, observer, rounds),
        ghost_cost=costs["gc"],
        bot_cost=costs["gd"],
    )


def txn_counts(hs: Homeserver) -> dict[str, float]:
    """Synapse's database transactions so far, per ``desc``."""
    return {
        labels.get("desc", ""): value
        for name, labels, value in scrape_metrics(hs.metrics_url)
        # A prometheus_client Counter: exposed with a "_total" suffix.
        if name.removesuffix("_total") == "synapse_storage_transaction_time_count"
    }


def _costs(
    hs: Homeserver, timer: _Timer, alice: Http, rooms: GhostRooms, block: int
) -> dict[str, PathCost]:
    """(g3): ``block`` messages per block, blocks in ABBA order, two per path."""
    costs = {"gc": PathCost(), "gd": PathCost()}
    room_of = {"gc": rooms.ghosts_a, "gd": rooms.bot_a}
    index = 0
    for path in ("gc", "gd", "gd", "gc"):
        settled_cost(hs)
        txns_before, cpu_before = txn_counts(hs), process_cpu_s(hs.process.pid)
        for _ in range(block):
            timer.time(alice, room_of[path], path, index)
            index += 1
        # CPU until the last counterpart is in /sync; transactions until the
        # module is quiet, so its trailing writes count too (and with them
        # whatever periodic jobs Synapse ran meanwhile).
        cpu_after = process_cpu_s(hs.process.pid)
        settled_cost(hs)
        txns_after = txn_counts(hs)
        costs[path].add(
            block,
            cpu_after - cpu_before,
            {d: n - txns_before.get(d, 0.0) for d, n in txns_after.items()},
        )
    return costs


def _count(rooms: GhostRooms, observer: Observer, rounds: int) -> GhostCounts:
    senders = observer.senders_of
    alice_ghost = rooms.namespace.user_id_for(_user_id(rooms.alice), rooms.ghosts_a)
    steady_ghost = [senders.get(("gg", i)) for i in range(rounds)]
    steady_bot = [senders.get(("gb", i)) for i in range(rounds)]
    newcomer_senders = [senders.get(("gn", j)) for j in range(len(rooms.newcomers))]
    own = [rooms.namespace.user_id_for(_user_id(n), rooms.ghosts_a) for n in rooms.newcomers]
    return GhostCounts(
        steady_ghost_sends=rounds,
        steady_ghost_by_own_ghost=sum(1 for s in steady_ghost if s == alice_ghost),
        steady_bot_sends=rounds,
        steady_bot_by_bot=sum(1 for s in steady_bot if s == rooms.bot),
        new_authors=len(rooms.newcomers),
        new_authors_by_own_ghost=sum(
            1 for s, ghost in zip(newcomer_senders, own, strict=True) if s == ghost
        ),
        new_author_ghosts=len({s for s in newcomer_senders if s is not None}),
    )


def _user_id(client: MatrixClient) -> str:
    if client.user_id is None:
        raise BenchError("a registered client without a user ID")
    return client.user_id


# -- report ---------------------------------------------------------------------------------


def report(result: GhostResult) -> Iterator[str]:
    rows = (
        ("(g1) steady, ghost sends", result.steady_ghosts),
        ("(g1) steady, bot sends", result.steady_bot),
        ("(g2) a new author's first", result.new_authors),
        ("(g2) steady, same room", result.new_baseline),
    )
    yield (
        f"(g) ghosts vs bot, send in A -> visible in B's /sync, one message at a time: "
        f"{result.rounds} per steady path (ABBA), {len(result.new_authors)} new authors "
        "(ms)"
    )
    yield f"  {'path':<34}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
    for label, seconds in rows:
        s = LatencyStats.of(seconds)
        yield (
            f"  {label:<34}{s.n:>6}{fmt(s.p50_ms):>9}{fmt(s.p90_ms):>9}"
            f"{fmt(s.p99_ms):>9}{fmt(s.max_ms):>9}"
        )
    ghosts, bot = LatencyStats.of(result.steady_ghosts), LatencyStats.of(result.steady_bot)
    ratio = ghosts.p50_ms / bot.p50_ms
    yield (
        f"RATIO ghosts: ghost p50 / bot p50 = {ratio:.2f} "
        f"({fmt(ghosts.p50_ms)} / {fmt(bot.p50_ms)} ms; "
        f"target <= {GHOSTS_TARGET}: {met(ratio <= GHOSTS_TARGET)})"
    )
    first, base = LatencyStats.of(result.new_authors), LatencyStats.of(result.new_baseline)
    first_ratio = first.p50_ms / base.p50_ms
    yield (
        f"RATIO new author: first message p50 / steady p50 = {first_ratio:.2f} "
        f"({fmt(first.p50_ms)} / {fmt(base.p50_ms)} ms, worst first message "
        f"{fmt(first.max_ms)} ms; target <= {FIRST_MESSAGE_TARGET:.0f}: "
        f"{met(first_ratio <= FIRST_MESSAGE_TARGET)})"
    )
    g, b = result.ghost_cost, result.bot_cost
    yield (
        f"  (g3) per counterpart, {g.pointers} per path in ABBA blocks: Synapse DB txns "
        f"{fmt(g.per_pointer())} with ghosts vs {fmt(b.per_pointer())} with the bot (its "
        f"periodic jobs included); Synapse CPU {fmt(g.cpu_s / g.pointers * 1000)} vs "
        f"{fmt(b.cpu_s / b.pointers * 1000)} ms"
    )
    extra = sorted(
        ((desc, g.per_pointer(desc) - b.per_pointer(desc)) for desc in set(g.txns) | set(b.txns)),
        key=lambda kv: -abs(kv[1]),
    )
    shown = [f"{desc} {d:+.2f}" for desc, d in extra[:8] if abs(d) >= 0.05]
    yield "  (g3) txns per counterpart, ghosts - bot: " + (", ".join(shown) or "none")
    c = result.counts
    yield (
        f"COUNT ghost senders: {c.steady_ghost_by_own_ghost}/{c.steady_ghost_sends} steady "
        f"counterparts by the author's ghost, {c.steady_bot_by_bot}/{c.steady_bot_sends} by the "
        f"bot where the consent asks for it, {c.new_authors_by_own_ghost}/{c.new_authors} new "
        f"authors' by their own ghost ({c.new_author_ghosts} distinct)"
    )
