"""Scale benchmark: the ferry with many connected pairs of rooms on one server.

Every figure is a ratio or a count measured in this one run, against a
baseline measured in the same run (the machine is shared and noisy):

(1) latency p50 from a client's ``PUT /send`` in room A0 to the pointer in a
    long-polling ``/sync`` of a member of B0, with 1 connected pair on the
    server and again with N more: ratio N/1 (target <= 1.1);
(2) sequential ``PUT /send`` throughput in an unconnected room, Synapse with
    the module vs without (``"modules": []``), ABBA rounds, before and after
    the N connections exist: overhead (target < 3%, checked at N);
(3) memory: the Synapse process's VmRSS before and after setting up the N
    connections, per connection;
(4) time to set up the N connections (REST API, parallel clients, until the
    bot's "now connected" notice is in every room): the part after the last
    REST call (the bot's activation still to do) per connection, each
    connection's activation from its second consent to the notice, and the
    events Synapse persisted per connection (the users' and the bot's);
(5) a burst of one message in each of the N source rooms: pointers per second
    from the first send until the last pointer is in ``/sync``, against a
    burst of N messages into ONE connected room (the batched path): ratio
    (target >= 0.8); with the module's database transactions per pointer, from
    Synapse's ``synapse_storage_transaction_time_count``, for a burst over the
    first few pairs and over all N (a count: it must not grow with N);
(6) the same two bursts on a worker deployment (PostgreSQL, Redis, event
    persister, client worker) with one dedicated ferry worker, and with two
    when ``--ferry-workers 2`` is given and the module takes a list for its
    ``worker`` option;
(7) ghosts (bench/scale_ghosts.py): database rows of every table and VmRSS
    per ghost, from one message by each of ``--authors`` new authors against
    as many messages by one author whose ghost exists, in one connected pair
    with the default senders.

(1) to (6) connect their rooms with ``"senders": "bot"``, as every recorded
run before ghosts did, so their figures stay comparable.

Run from the repository root::

    .venv/bin/python bench/scale.py                 # full run: N = 1000
    .venv/bin/python bench/scale.py --short         # CI size: N = 20
    .venv/bin/python bench/scale.py --pairs 200     # any N
    .venv/bin/python bench/scale.py --set-up-only   # (3) and (4) alone, one server
    .venv/bin/python bench/scale.py --ghosts-only   # (7) alone, 1000 authors
    .venv/bin/python bench/scale.py --ghosts-only --ghost-namespace  # (7), AS namespace

Exits 1 on errors (a server that does not start, a pointer that never lands,
a pointer doubled or in the wrong room); a missed target is printed as MISS
and never fails the run. ``docs/benchmarks.md`` ("Scale") has a recorded run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    # Run as a script (bench/scale.py): the harness lives in the repository root.
    sys.path.insert(0, str(ROOT))

from bench.ferry import (  # noqa: E402
    Http,
    ServerCost,
    describe_machine,
    percentile,
    process_cpu_s,
    run_threads,
    scrape_metrics,
    text,
    wait_for_background_updates,
)
from bench.scale_rooms import (  # noqa: E402
    Owners,
    RoomPair,
    SyncReader,
    connected_notice_key,
    create_pairs,
    pointer_key,
    wait_until_connected,
)
from bench.scale_setup import SetUpEvents, events_since, module_cpu_s, stream_position  # noqa: E402
from bench.scale_workers import (  # noqa: E402
    LIST_NOT_ACCEPTED,
    FerryWorkerDeployment,
    accepts_worker_list,
)
from bench.servers import (  # noqa: E402
    BenchError,
    create_pair,
    make_run_dir,
    remove_run_dir,
    run_script,
)
from harness.appservice import AppService, register_appservice  # noqa: E402
from harness.client import MatrixClient  # noqa: E402
from harness.connect_api import unique  # noqa: E402
from harness.ferry_helpers import Pair, connected_pair  # noqa: E402
from harness.postgres import PostgresServer  # noqa: E402
from harness.redis import RedisServer  # noqa: E402
from harness.synapse import Homeserver, start_together  # noqa: E402
from synapse_room_connect.constants import DEFAULT_GHOST_LOCALPART_PREFIX  # noqa: E402

if TYPE_CHECKING:
    from bench.scale_ghosts import GhostCost

LATENCY_TARGET: Final = 1.1
OVERHEAD_TARGET: Final = 0.03
BURST_TARGET: Final = 0.8
WARMUP_MESSAGES: Final = 5
SETTLE_QUIET_S: Final = 2.0
SETTLE_MAX_S: Final = 60.0


# -- measuring ------------------------------------------------------------------------------


def rss_kib(pid: int | None) -> int:
    """VmRSS of a process in KiB (0 if it is not running)."""
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def module_txns(hs: Homeserver) -> dict[str, float]:
    """Transactions run so far per ``room_connect_*`` description."""
    return dict(ServerCost.read(hs).module_txn_count)


def settle(hs: Homeserver) -> None:
    """Until the module has run no database transaction for SETTLE_QUIET_S (at most
    SETTLE_MAX_S): the ferry has caught up with everything so far, including the
    bot's own pointers, which wake it once more."""
    deadline = time.monotonic() + SETTLE_MAX_S
    last = module_txns(hs)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = module_txns(hs)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_QUIET_S:
            return


@dataclass
class BurstResult:
    """One burst: ``messages`` sends by ``threads`` clients at once, each answered
    by one pointer in the room the message's source room is connected to."""

    label: str
    messages: int
    rooms: int
    threads: int
    send_s: float  # first send started .. last send returned
    land_s: float  # first send started .. last pointer in /sync
    drain_s: float  # last send returned .. last pointer in /sync
    missing: int
    doubled: int
    misplaced: int
    module_txns: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.land_s if self.land_s > 0 else math.nan

    @property
    def exact(self) -> bool:
        return self.missing == self.doubled == self.misplaced == 0

    @property
    def txns_per_pointer(self) -> float:
        total = sum(self.module_txns.values())
        return total / self.messages if self.module_txns else math.nan


def burst(
    label: str,
    base_url: str,
    sender: MatrixClient,
    reader: SyncReader,
    targets: Sequence[tuple[str, str]],
    threads: int,
    timeout: float,
) -> BurstResult:
    """Send one message per (source, target) entry, ``threads`` clients at once,
    and wait until each has its pointer; ``targets`` may repeat a source room."""
    token = sender.access_token
    event_ids: list[str] = [""] * len(targets)
    starts: list[float] = [math.inf] * len(targets)
    returns: list[float] = [0.0] * len(targets)
    errors: list[BaseException] = []

    def send_share(offset: int) -> None:
        http_ = Http(base_url, token)
        try:
            for i in range(offset, len(targets), threads):
                starts[i] = time.monotonic()
                event_ids[i], returns[i] = http_.send(targets[i][0], text(f"{label} {i}"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            http_.close()

    workers = [threading.Thread(target=send_share, args=(t,)) for t in range(threads)]
    run_threads(workers, errors, f"burst {label}: a send")
    missing = reader.wait_for(event_ids, timeout)
    first, last_return = min(starts), max(returns)
    doubled = misplaced = 0
    last_arrival = 0.0
    for event_id, (_, target) in zip(event_ids, targets, strict=True):
        sightings = reader.sightings(event_id)
        doubled += max(0, len(sightings) - 1)
        misplaced += sum(1 for _, room in sightings if room != target)
        if sightings:
            last_arrival = max(last_arrival, sightings[0][0])
    if reader.limited:
        raise BenchError(f"burst {label}: {reader.limited} limited /sync timelines")
    return BurstResult(
        label=label,
        messages=len(targets),
        rooms=len({source for source, _ in targets}),
        threads=threads,
        send_s=last_return - first,
        land_s=last_arrival - first,
        drain_s=last_arrival - last_return,
        missing=len(missing),
        doubled=doubled,
        misplaced=misplaced,
    )


def measured_burst(hs: Homeserver, run_burst: Callable[[], BurstResult]) -> BurstResult:
    """``run_burst()``, a burst on the single homeserver ``hs``, with the module's
    transactions it caused."""
    settle(hs)
    before = module_txns(hs)
    result = run_burst()
    settle(hs)
    after = module_txns(hs)
    result.module_txns = {
        desc: count - before.get(desc, 0.0)
        for desc, count in after.items()
        if count != before.get(desc, 0.0)
    }
    return result


def latency_p50_ms(
    hs: Homeserver, pair: Pair, reader: SyncReader, messages: int, interval: float
) -> float:
    """Sequential sends into A0, one per ``interval`` s (latency, not queueing)."""
    http_ = Http(hs.client_url, pair.alice.access_token)
    sends: list[tuple[str, float]] = []
    try:
        for i in range(WARMUP_MESSAGES + messages):
            started = time.monotonic()
            event_id, _ = http_.send(pair.room_a, text(f"latency {i}"))
            if i >= WARMUP_MESSAGES:
                sends.append((event_id, started))
            time.sleep(max(0.0, started + interval - time.monotonic()))
    finally:
        http_.close()
    missing = reader.wait_for([event_id for event_id, _ in sends], 120)
    if missing:
        raise BenchError(f"{len(missing)} latency messages never reached B0")
    return percentile(
        [(reader.sightings(event_id)[0][0] - started) * 1000 for event_id, started in sends], 50
    )


@dataclass
class Throughput:
    with_rate: float
    without_rate: float
    with_cpu_ms: float
    without_cpu_ms: float

    @property
    def overhead(self) -> float:
        return 1 - self.with_rate / self.without_rate


_counter = itertools.count()


def throughput(
    rooms: dict[str, tuple[Homeserver, MatrixClient, str]], messages: int, rounds: int
) -> Throughput:
    """Sequential sends by one client per server; ABBA rounds, so drift hits both."""
    https = {
        key: Http(hs.client_url, client.access_token) for key, (hs, client, _) in rooms.items()
    }
    elapsed = dict.fromkeys(rooms, 0.0)
    cpu = dict.fromkeys(rooms, 0.0)
    per_round = max(1, messages // rounds)
    try:
        for key, (_, _, room) in rooms.items():
            for _ in range(WARMUP_MESSAGES):
                https[key].send(room, text(f"warm-up {next(_counter)}"))
        for r in range(rounds):
            for key in ("with", "without") if r % 2 == 0 else ("without", "with"):
                hs, _, room = rooms[key]
                cpu_before, started = process_cpu_s(hs.process.pid), time.monotonic()
                for _ in range(per_round):
                    https[key].send(room, text(f"throughput {next(_counter)}"))
                elapsed[key] += time.monotonic() - started
                cpu[key] += process_cpu_s(hs.process.pid) - cpu_before
    finally:
        for h in https.values():
            h.close()
    total = per_round * rounds
    return Throughput(
        with_rate=total / elapsed["with"],
        without_rate=total / elapsed["without"],
        with_cpu_ms=cpu["with"] / total * 1000,
        without_cpu_ms=cpu["without"] / total * 1000,
    )


# -- phases ------------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    ferry_workers: int
    pairs: int
    single: BurstResult
    across: BurstResult

    @property
    def ratio(self) -> float:
        return self.across.rate / self.single.rate


@dataclass
class Results:
    pairs: int
    small_pairs: int
    latency_1_ms: float
    latency_n_ms: float
    throughput_1: Throughput
    throughput_n: Throughput
    rss_before_kib: int
    rss_after_kib: int
    setup: SetUp
    single: BurstResult
    small: BurstResult
    across: BurstResult
    workers: list[WorkerRun] = field(default_factory=list)
    worker_notes: list[str] = field(default_factory=list)
    ghosts: GhostCost | None = None


@dataclass
class SetUp:
    """Seconds from the first request until every connection was active through
    the REST API (``rest_s``), and until the bot's notice was in every B (``ready_s``);
    for each connection, seconds from the REST API's first "active" to the
    notice in its B (``activations_s``); the events Synapse persisted meanwhile."""

    rest_s: float = 0.0
    ready_s: float = 0.0
    activations_s: list[float] = field(default_factory=list)
    events: SetUpEvents | None = None

    @property
    def tail_s(self) -> float:
        """The bot's activation still to do once the last consent was answered."""
        return self.ready_s - self.rest_s

    def plus(self, other: SetUp) -> SetUp:
        events = (
            self.events.plus(other.events)
            if self.events is not None and other.events is not None
            else None
        )
        return SetUp(
            self.rest_s + other.rest_s,
            self.ready_s + other.ready_s,
            self.activations_s + other.activations_s,
            events,
        )


def set_up_pairs(
    server: Any, owners: Owners, indexes: range, threads: int, *, count_events: bool = False
) -> tuple[list[RoomPair], SetUp]:
    """Connect the pairs and wait for the bot's notice in each B. The notice
    reader runs only meanwhile: every /sync woken by the bot's messages would
    cost the server during the measurements. With ``count_events`` (a single
    server on SQLite), also count the events persisted, once the module is quiet."""
    notices = started_reader(
        server, owners.bob, owners.bot, key_of=connected_notice_key, key_per_room=True
    )
    db_path = server.sqlite_path if count_events else None
    since = stream_position(db_path) if db_path is not None else 0
    cpu_before = process_cpu_s(server.process.pid) if count_events else 0.0
    module_before = module_cpu_s(scrape_metrics(server.metrics_url)) if count_events else {}
    try:
        started = time.monotonic()
        pairs = create_pairs(owners, indexes, threads)
        rest_s = time.monotonic() - started
        timeout = 120 + len(indexes) * 3.0
        wait_until_connected(notices, [p.room_b for p in pairs], timeout, "set-up")
        ready_s = time.monotonic() - started
        activations = [notices.sightings(p.room_b)[0][0] - p.active_at for p in pairs]
    finally:
        notices.stop()
    events = None
    if db_path is not None:
        settle(server)
        events = events_since(db_path, since, owners.bot, len(pairs))
        events.synapse_cpu_s = process_cpu_s(server.process.pid) - cpu_before
        module_after = module_cpu_s(scrape_metrics(server.metrics_url))
        events.module_cpu_s = {
            name: cpu - module_before.get(name, 0.0) for name, cpu in module_after.items()
        }
    return pairs, SetUp(rest_s, ready_s, activations, events)


def mirror_rooms(server: Homeserver, pairs: int, threads: int) -> None:
    """As many rooms on the server without the module as the pairs hold on
    the one with it, so that (2) at N compares servers of the same size and
    measures the module, not Synapse's cost of 2N more rooms."""
    alice, bob = server.register(unique("alice")), server.register(unique("bob"))

    def create(i: int) -> None:
        alice.create_room(name=f"A{i}")
        bob.create_room(name=f"B{i}")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(create, range(pairs)))
    settle(server)


def across(pairs: Sequence[RoomPair]) -> list[tuple[str, str]]:
    return [(p.room_a, p.room_b) for p in pairs]


def started_reader(server: Any, client: MatrixClient, bot: str, **kwargs: Any) -> SyncReader:
    # Pointers come from the authors' ghosts, notices from the bot.
    any_sender = kwargs.get("key_of") is pointer_key
    reader = SyncReader(server.client_url, client, bot, any_sender=any_sender, **kwargs)
    reader.prime()
    reader.start()
    return reader


def start_servers(
    base_dir: Path,
    servers: list[Homeserver],
    before_start: Callable[[Homeserver], None] | None = None,
) -> tuple[Homeserver, Homeserver]:
    """The server with the module and the one without; ``servers`` collects them for
    clean-up. A fresh database runs ~50 background updates, by default one batch a
    second for a minute; they run back to back here, and are done before measuring.
    ``before_start``: what else the server with the module is configured with."""
    mod, plain = create_pair(
        base_dir,
        servers,
        names=("scale-module", "scale-plain"),
        config_overrides={"background_updates": {"sleep_enabled": False}},
    )
    if before_start is not None:
        before_start(mod)
    start_together((mod, plain))
    if "bot_user_id" not in mod.info():
        raise BenchError("the module is not answering on the homeserver that should load it")
    for hs in (mod, plain):
        wait_for_background_updates(hs)
    return mod, plain


def run_single_server(
    args: argparse.Namespace, base_dir: Path, progress: Callable[[str], None]
) -> Results:
    servers: list[Homeserver] = []
    readers: list[SyncReader] = []
    try:
        mod, plain = start_servers(base_dir, servers)
        progress("servers up")
        tp_rooms: dict[str, tuple[Homeserver, MatrixClient, str]] = {}
        for key, hs in (("with", mod), ("without", plain)):
            client = hs.register(unique("tp"))
            tp_rooms[key] = (hs, client, client.create_room(name=unique("tp")))
        pair0 = connected_pair(mod, senders="bot")
        bot = pair0.bot
        reader0 = started_reader(mod, pair0.bob, bot, key_of=pointer_key)
        readers.append(reader0)
        throughput_1 = throughput(tp_rooms, args.throughput_messages, args.rounds)
        progress(f"(2) at 1 pair: {throughput_1.with_rate:.1f} vs {throughput_1.without_rate:.1f}")
        latency_1 = latency_p50_ms(mod, pair0, reader0, args.latency_messages, args.interval)
        progress(f"(1) at 1 pair: p50 {latency_1:.0f} ms")

        owners = Owners.register(mod)
        rss_before = rss_kib(mod.process.pid)
        small_pairs, small_setup = set_up_pairs(
            mod, owners, range(args.small_pairs), args.threads, count_events=True
        )
        reader = started_reader(mod, owners.bob, bot, key_of=pointer_key)
        readers.append(reader)
        burst_timeout = 120 + args.pairs * 1.0
        small = measured_burst(
            mod,
            lambda: burst(
                "small",
                mod.client_url,
                owners.alice,
                reader,
                across(small_pairs),
                args.threads,
                burst_timeout,
            ),
        )
        progress(f"(5) burst over {len(small_pairs)} rooms: {small.rate:.1f} pointers/s")
        rest, rest_setup = set_up_pairs(
            mod, owners, range(args.small_pairs, args.pairs), args.threads, count_events=True
        )
        pairs = small_pairs + rest
        settle(mod)
        rss_after = rss_kib(mod.process.pid)
        setup = small_setup.plus(rest_setup)
        progress(f"(4) {len(pairs)} pairs set up in {setup.ready_s:.1f} s")
        mirror_rooms(plain, len(pairs) + 1, args.threads)
        progress(f"(2) the server without the module also holds {2 * len(pairs) + 2} more rooms")

        latency_n = latency_p50_ms(mod, pair0, reader0, args.latency_messages, args.interval)
        progress(f"(1) at {len(pairs)} pairs: p50 {latency_n:.0f} ms")
        single = measured_burst(
            mod,
            lambda: burst(
                "single",
                mod.client_url,
                pair0.alice,
                reader0,
                [(pair0.room_a, pair0.room_b)] * len(pairs),
                args.threads,
                burst_timeout,
            ),
        )
        progress(f"(5) burst into 1 room: {single.rate:.1f} pointers/s")
        wide = measured_burst(
            mod,
            lambda: burst(
                "across",
                mod.client_url,
                owners.alice,
                reader,
                across(pairs),
                args.threads,
                burst_timeout,
            ),
        )
        progress(f"(5) burst over {len(pairs)} rooms: {wide.rate:.1f} pointers/s")
        throughput_n = throughput(tp_rooms, args.throughput_messages, args.rounds)
        progress(f"(2) at N: {throughput_n.with_rate:.1f} vs {throughput_n.without_rate:.1f}")
        # Last: its N new users and their ghosts would weigh on (1) to (5).
        ghosts = run_ghost_cost(mod, args.authors, args.threads, progress)
        return Results(
            pairs=len(pairs),
            small_pairs=len(small_pairs),
            latency_1_ms=latency_1,
            latency_n_ms=latency_n,
            throughput_1=throughput_1,
            throughput_n=throughput_n,
            rss_before_kib=rss_before,
            rss_after_kib=rss_after,
            setup=setup,
            single=single,
            small=small,
            across=wide,
            ghosts=ghosts,
        )
    finally:
        for r in readers:
            r.stop()
        for hs in servers:
            hs.destroy()


@dataclass
class SetUpRun:
    """``--set-up-only``: (3) and (4) on a server with the module alone."""

    pairs: int
    rss_before_kib: int
    rss_after_kib: int
    setup: SetUp


def run_set_up_only(
    args: argparse.Namespace, base_dir: Path, progress: Callable[[str], None]
) -> SetUpRun:
    """The N connections set up as in the full run, without the phases around
    it (no server without the module, no latency, throughput or bursts)."""
    servers: list[Homeserver] = []
    try:
        mod = Homeserver(
            base_dir,
            name="scale-module",
            config_overrides={"background_updates": {"sleep_enabled": False}},
        )
        servers.append(mod)
        start_together((mod,))
        wait_for_background_updates(mod)
        progress("server up")
        owners = Owners.register(mod)
        rss_before = rss_kib(mod.process.pid)
        _, setup = set_up_pairs(mod, owners, range(args.pairs), args.threads, count_events=True)
        rss_after = rss_kib(mod.process.pid)
        progress(f"(4) {args.pairs} pairs set up in {setup.ready_s:.1f} s")
        return SetUpRun(args.pairs, rss_before, rss_after, setup)
    finally:
        for hs in servers:
            hs.destroy()


def run_ghost_cost(
    hs: Homeserver, authors: int, threads: int, progress: Callable[[str], None]
) -> GhostCost:
    # Imported here: bench.scale_ghosts builds on this module's measuring.
    from bench.scale_ghosts import run_ghost_cost as run

    return run(hs, authors, threads, progress)


def run_ghosts_only(
    args: argparse.Namespace, base_dir: Path, progress: Callable[[str], None]
) -> GhostCost:
    servers: list[Homeserver] = []
    try:
        namespace = register_ghost_namespace if args.ghost_namespace else None
        mod, _ = start_servers(base_dir, servers, before_start=namespace)
        in_namespace = ", the ghosts in an application service's namespace" if namespace else ""
        progress(f"servers up{in_namespace}")
        return run_ghost_cost(mod, args.authors, args.threads, progress)
    finally:
        for hs in servers:
            hs.destroy()


def register_ghost_namespace(hs: Homeserver) -> None:
    """The registration docs/admin.md suggests for large rooms: an
    application service without a URL whose user namespace is the ghosts'."""
    service = AppService(
        id="room-connect-ghosts",
        sender_localpart="room-connect-ghosts",
        user_regex=f"@{DEFAULT_GHOST_LOCALPART_PREFIX}.*",
    )
    register_appservice(hs, service)


def ghost_lines(cost: GhostCost | None) -> Iterator[str]:
    from bench.scale_ghosts import report as ghosts_report

    if cost is not None:
        yield from ghosts_report(cost)


def run_worker_deployment(
    args: argparse.Namespace,
    base_dir: Path,
    postgres: PostgresServer,
    redis: RedisServer,
    ferry_workers: int,
) -> WorkerRun:
    names = [f"ferry{i + 1}" for i in range(ferry_workers)]
    deployment = FerryWorkerDeployment(
        postgres,
        redis,
        names,
        base_dir=base_dir,
        name=f"scale-{ferry_workers}-ferry",
        config_overrides={"background_updates": {"sleep_enabled": False}},
    )
    readers: list[SyncReader] = []
    try:
        deployment.start()
        pair0 = connected_pair(deployment, senders="bot")
        owners = Owners.register(deployment)
        pairs, _ = set_up_pairs(deployment, owners, range(args.worker_pairs), args.threads)
        reader0 = started_reader(deployment, pair0.bob, pair0.bot, key_of=pointer_key)
        reader = started_reader(deployment, owners.bob, pair0.bot, key_of=pointer_key)
        readers += [reader0, reader]
        timeout = 120 + args.worker_pairs * 1.0
        # Quiet first: the set-up's notices and joins are still being processed.
        time.sleep(SETTLE_QUIET_S)
        single = burst(
            "w-single",
            deployment.client_url,
            pair0.alice,
            reader0,
            [(pair0.room_a, pair0.room_b)] * len(pairs),
            args.threads,
            timeout,
        )
        wide = burst(
            "w-across",
            deployment.client_url,
            owners.alice,
            reader,
            across(pairs),
            args.threads,
            timeout,
        )
        return WorkerRun(ferry_workers, len(pairs), single, wide)
    finally:
        for r in readers:
            r.stop()
        deployment.destroy()


def run_workers(
    args: argparse.Namespace, base_dir: Path, progress: Callable[[str], None]
) -> tuple[list[WorkerRun], list[str]]:
    runs: list[WorkerRun] = []
    notes: list[str] = []
    wanted = list(range(1, args.ferry_workers + 1))
    if 2 in wanted and not accepts_worker_list():
        wanted.remove(2)
        notes.append(f"(6) 2 ferry workers: {LIST_NOT_ACCEPTED}")
    if not wanted:
        return runs, notes
    postgres = PostgresServer(base_dir)
    redis = RedisServer(base_dir)
    try:
        postgres.start()
        redis.start()
        for count in wanted:
            run = run_worker_deployment(args, base_dir, postgres, redis, count)
            progress(
                f"(6) {count} ferry worker(s): {run.single.rate:.1f} vs {run.across.rate:.1f}"
                " pointers/s"
            )
            runs.append(run)
    finally:
        redis.stop()
        postgres.stop()
    return runs, notes


# -- reporting -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def burst_lines(b: BurstResult) -> Iterator[str]:
    yield (
        f"  burst {b.label}: {b.messages} messages into {b.rooms} room(s), {b.threads} senders: "
        f"sent in {b.send_s:.2f} s, all pointers in /sync after {b.land_s:.2f} s "
        f"({b.drain_s:.2f} s after the last send) = {b.rate:.1f} pointers/s"
    )
    yield (
        f"COUNT burst {b.label}: {b.messages} messages, missing {b.missing}, "
        f"doubled {b.doubled}, in the wrong room {b.misplaced}"
    )
    if b.module_txns:
        yield (
            f"COUNT burst {b.label}: module transactions per pointer {b.txns_per_pointer:.2f} "
            f"({int(sum(b.module_txns.values()))} for {b.messages}: "
            + ", ".join(
                f"{d.removeprefix('room_connect_')} {int(c)}"
                for d, c in sorted(b.module_txns.items())
            )
            + ")"
        )


def report(r: Results) -> Iterator[str]:
    n = r.pairs
    latency = r.latency_n_ms / r.latency_1_ms
    yield (
        f"(1) latency p50 send -> pointer in /sync: {r.latency_1_ms:.0f} ms with 1 pair, "
        f"{r.latency_n_ms:.0f} ms with {n} more pairs"
    )
    yield (
        f"RATIO latency N/1: {latency:.2f} (target <= {LATENCY_TARGET}) "
        f"{verdict(latency <= LATENCY_TARGET)}"
    )
    for label, t in (("1 pair", r.throughput_1), (f"{n} pairs", r.throughput_n)):
        yield (
            f"(2) send throughput at {label}: {t.with_rate:.1f}/s with the module, "
            f"{t.without_rate:.1f}/s without; CPU per send {t.with_cpu_ms:.1f} vs "
            f"{t.without_cpu_ms:.1f} ms; overhead {t.overhead:+.1%}"
        )
    overhead = r.throughput_n.overhead
    yield (
        f"RATIO overhead at N: {overhead:+.1%} (target < {OVERHEAD_TARGET:.0%}) "
        f"{verdict(overhead < OVERHEAD_TARGET)}"
    )
    yield from set_up_lines(n, r.rss_before_kib, r.rss_after_kib, r.setup)
    yield "(5) bursts on the single-process server:"
    for b in (r.single, r.small, r.across):
        yield from burst_lines(b)
    ratio = r.across.rate / r.single.rate
    yield (
        f"RATIO burst across {n} rooms / into 1 room: {ratio:.2f} "
        f"(target >= {BURST_TARGET}) {verdict(ratio >= BURST_TARGET)}"
    )
    growth = r.across.txns_per_pointer / r.small.txns_per_pointer
    yield (
        f"RATIO module transactions per pointer, {n} rooms / {r.small_pairs} rooms: "
        f"{growth:.2f} (1.00 = no growth)"
    )
    yield from ghost_lines(r.ghosts)


def set_up_lines(n: int, rss_before_kib: int, rss_after_kib: int, s: SetUp) -> Iterator[str]:
    per_conn = (rss_after_kib - rss_before_kib) / n
    yield (
        f"(3) memory: VmRSS {rss_before_kib / 1024:.0f} MiB before, "
        f"{rss_after_kib / 1024:.0f} MiB after {n} connections = "
        f"{per_conn:.0f} KiB per connection"
    )
    ready = s.ready_s
    yield (
        f"(4) set-up: {n} connections in {ready:.1f} s = {ready / n * 1000:.0f} ms each, "
        f"{n / ready:.1f}/s (rooms created and both consents given after "
        f"{s.rest_s:.1f} s; the rest is the bot joining and announcing)"
    )
    yield (
        f"(4) activation after the last consent: {s.tail_s:.1f} s = "
        f"{s.tail_s / n:.3f} s per connection (the bot's joins and notices not yet done "
        "when the REST calls were)"
    )
    if s.activations_s:
        yield (
            "(4) each connection's activation, REST 'active' -> notice in B: "
            f"p50 {percentile(s.activations_s, 50):.2f} s, "
            f"p90 {percentile(s.activations_s, 90):.2f} s, max {max(s.activations_s):.2f} s"
        )
    e = s.events
    if e is not None:
        per = e.per_connection
        yield (
            f"COUNT set-up events persisted per connection: {per(e.total):.2f} "
            f"(the users' rooms and consents {per(e.users):.2f}; the bot's activation "
            f"{per(e.activation):.2f}: joins {per(e.bot_joins):.2f}, invites of the bot "
            f"{per(e.bot_invites):.2f}, notices {per(e.bot_notices):.2f}, "
            f"other {per(e.bot_other):.2f})"
        )
        module = sum(e.module_cpu_s.values())
        yield (
            f"(4) Synapse CPU per connection during set-up: {e.synapse_cpu_s / n * 1000:.0f} ms, "
            f"of which the module's background processes {module / n * 1000:.0f} ms ("
            + ", ".join(
                f"{name.removeprefix('room_connect_')} {cpu / n * 1000:.0f}"
                for name, cpu in sorted(e.module_cpu_s.items())
                if cpu > 0
            )
            + "; the events they create are persisted outside them)"
        )


def report_workers(r: Results) -> Iterator[str]:
    for w in r.workers:
        yield f"(6) worker deployment, {w.ferry_workers} ferry worker(s), {w.pairs} pairs:"
        yield from burst_lines(w.single)
        yield from burst_lines(w.across)
        yield (
            f"RATIO workers, {w.ferry_workers} ferry worker(s): burst across {w.pairs} rooms / "
            f"into 1 room: {w.ratio:.2f} (target >= {BURST_TARGET}) "
            f"{verdict(w.ratio >= BURST_TARGET)}"
        )
    if len(r.workers) == 2:
        gain = r.workers[1].across.rate / r.workers[0].across.rate
        yield f"RATIO burst across rooms, 2 ferry workers / 1: {gain:.2f}"
    yield from r.worker_notes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="CI size: N = 20, small counts")
    parser.add_argument("--pairs", type=int, help="N connected pairs (full 1000, short 20)")
    parser.add_argument("--small-pairs", type=int, default=2, help="pairs of the small burst")
    parser.add_argument("--latency-messages", type=int, help="per measurement (full 100, short 10)")
    parser.add_argument("--interval", type=float, default=0.25, help="s between latency sends")
    parser.add_argument("--throughput-messages", type=int, help="per server (full 400, short 40)")
    parser.add_argument("--rounds", type=int, help="ABBA rounds (full 8, short 2)")
    parser.add_argument("--threads", type=int, default=4, help="parallel clients (set-up, bursts)")
    parser.add_argument(
        "--ferry-workers",
        type=int,
        choices=(0, 1, 2),
        default=2,
        help="worker deployment: 0 skips it, 1 runs one ferry worker, 2 also two (default)",
    )
    parser.add_argument(
        "--worker-pairs", type=int, help="pairs on the worker deployment (full 200, short 10)"
    )
    parser.add_argument(
        "--set-up-only",
        action="store_true",
        help="only (3) and (4): set up the N connections on a server with the module",
    )
    parser.add_argument("--authors", type=int, help="(7) new authors (full 1000, short 10)")
    parser.add_argument(
        "--ghosts-only", action="store_true", help="only (7), on a fresh pair of servers"
    )
    parser.add_argument(
        "--ghost-namespace",
        action="store_true",
        help="with --ghosts-only: the ghosts in an application service's namespace",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep server dirs and logs")
    args = parser.parse_args(argv)
    full = {
        "authors": 1000,
        "pairs": 1000,
        "latency_messages": 100,
        "throughput_messages": 400,
        "rounds": 8,
        "worker_pairs": 200,
    }
    short = {
        "authors": 10,
        "pairs": 20,
        "latency_messages": 10,
        "throughput_messages": 40,
        "rounds": 2,
        "worker_pairs": 10,
    }
    for name, default in (short if args.short else full).items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.worker_pairs = min(args.worker_pairs, args.pairs)
    if not 1 <= args.small_pairs < args.pairs:
        parser.error("--small-pairs must be at least 1 and below --pairs")
    counts = (
        args.latency_messages,
        args.throughput_messages,
        args.rounds,
        args.threads,
        args.worker_pairs,
        args.authors,
    )
    if min(counts) < 1 or args.interval <= 0:
        parser.error("counts and the interval must be positive")
    return args


def write_json(args: argparse.Namespace, results: Results | SetUpRun) -> None:
    if args.json is not None:
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, **asdict(results)}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def run(args: argparse.Namespace, print_line: Callable[[str], None]) -> int:
    started = time.monotonic()

    def progress(line: str) -> None:
        print_line(f"[{time.monotonic() - started:7.1f} s] {line}")

    base_dir = make_run_dir("room-connect-scale-", keep=args.keep)
    # PostgreSQL may run as another user and must reach its data directory.
    base_dir.chmod(0o755)
    print_line(
        f"synapse-room-connect scale benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
        f"{'short' if args.short else 'full'} run: N = {args.pairs} pairs, "
        f"{args.threads} parallel clients"
    )
    print_line(f"machine: {describe_machine()}")
    try:
        if args.set_up_only:
            only = run_set_up_only(args, base_dir, progress)
            for line in set_up_lines(
                only.pairs, only.rss_before_kib, only.rss_after_kib, only.setup
            ):
                print_line(line)
            write_json(args, only)
            print_line(f"total {time.monotonic() - started:.0f} s")
            return 0
        if args.ghosts_only:
            cost = run_ghosts_only(args, base_dir, progress)
            for line in ghost_lines(cost):
                print_line(line)
            print_line(f"total {time.monotonic() - started:.0f} s")
            if args.json is not None:
                payload = {"args": {k: str(v) for k, v in vars(args).items()}}
                payload["ghosts"] = asdict(cost)
                args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
            return 0
        results = run_single_server(args, base_dir, progress)
        # Reported before the worker deployment runs, so a failure there loses nothing.
        for line in report(results):
            print_line(line)
        write_json(args, results)
        results.workers, results.worker_notes = run_workers(args, base_dir, progress)
        for line in report_workers(results):
            print_line(line)
        print_line(f"total {time.monotonic() - started:.0f} s")
        write_json(args, results)
        exact = all(b.exact for b in (results.single, results.small, results.across))
        exact = exact and all(w.single.exact and w.across.exact for w in results.workers)
        if not exact:
            print_line("ERROR: a burst message has no pointer, two, or one in the wrong room")
            return 1
        return 0
    finally:
        remove_run_dir(base_dir, keep=args.keep, print_line=print_line)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_script(lambda: run(args, lambda line: print(line, flush=True)))


if __name__ == "__main__":
    sys.exit(main())
