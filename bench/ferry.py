"""Ferry benchmark: latency, send overhead and backlog of MSC2923 pointer events.

One run starts two real Synapse processes through the test harness (SQLite,
one with the module and one without) and measures, all from the client side
with ``time.monotonic``:

(a) latency from a client's ``PUT /send`` in room A to the pointer appearing in
    the long-polling ``/sync`` of a member of the connected room B;
(b) the same path through a relay bot that only uses the client-server API (a
    ``/sync`` loop on A', a ``PUT /send`` into B' per message, as relay bridges
    do today; a separate process), in an unconnected pair of rooms on the same
    homeserver, watched by the same ``/sync`` loop as (a);
(c) sequential ``PUT /send`` throughput by one client in an unconnected room,
    with the module vs without it, the servers alternating in ABBA rounds;
(d) backlog: messages offered at 100/s for N seconds into a connected room,
    sampling the module's ``synapse_room_connect_ferry_queue_depth`` gauge and
    timing the last pointer after the last send (the relay bot gets the same
    load afterwards, for reference);
(g) ghosts against the bot (bench/ferry_ghosts.py): one message at a time,
    steady-state latency with the author's ghost sending vs the bot sending
    (ABBA), and a new author's first message (ghost registered, invited,
    joined) vs a steady one in the same room.

(a) to (d) connect their rooms with ``"senders": "bot"``, as every recorded
run before ghosts did, so their figures stay comparable; (g) says what the
default, ghosts, costs on top.

(a) and (b) run at the same time on interleaved schedules: each path gets
``--rate`` messages/s, the relay path's sends half a period after the
module path's, so both see the same machine noise. Unless ``--rate`` is
given, the rate is 1/8 of the sequential send rate (c) measured on the
server without the module (at most 20/s), which keeps the homeserver busy
well under half the time: the figures are latency, not queueing.

Run from the repository root with the project's virtualenv::

    .venv/bin/python bench/ferry.py            # full run: minutes, more on a slow machine
    .venv/bin/python bench/ferry.py --short    # CI run, about half a minute
    .venv/bin/python bench/ferry.py --ghosts-only  # (g) alone

See docs/benchmarks.md for the method and a recorded run. Exits 1 on errors
(a server that does not start, lost messages, a failing request); missed
targets are reported, never failed.
"""

from __future__ import annotations

import argparse
import html
import http.client
import importlib.metadata
import itertools
import json
import math
import multiprocessing
import multiprocessing.synchronize
import os
import platform
import re
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

ROOT: Final = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    # Run as a script (bench/ferry.py): the harness lives in the repository root.
    sys.path.insert(0, str(ROOT))

from bench import servers as bench_servers  # noqa: E402
from bench.servers import CLIENT_V3, BenchError, create_pair, destroy_all, q  # noqa: E402
from harness.client import JsonDict, MatrixClient  # noqa: E402
from harness.connect_api import unique  # noqa: E402
from harness.ferry_helpers import (  # noqa: E402
    POINTER,
    Pair,
    all_events,
    connected_pair,
    pointers_in,
)
from harness.synapse import Homeserver, start_together  # noqa: E402

if TYPE_CHECKING:
    from bench.ferry_ghosts import GhostResult

QUEUE_DEPTH_METRIC: Final = "synapse_room_connect_ferry_queue_depth"
# Every benchmark message carries "bench:<path>:<index>" in its body; pointers and
# relayed copies keep the body (behind a "Name: " prefix), so the observer finds
# the index whichever path delivered it, even before the send has returned.
TAG_RE: Final = re.compile(r"bench:([a-z]+):(\d+)")
OBSERVER_POLL_MS: Final = 5_000
RELAY_POLL_MS: Final = 5_000
LATENCY_TARGET: Final = 0.5
OVERHEAD_TARGET: Final = 0.03
DRAIN_TARGET_S: Final = 1.0
WARMUP_MESSAGES: Final = 10
SHORT_WARMUP_MESSAGES: Final = 2
SHORT_RELAY_POLL_MS: Final = 1_000
# Counters that have not moved for this long are taken to be settled.
SETTLE_INTERVAL_S: Final = 0.3
SETTLE_TIMEOUT_S: Final = 10.0
DEPTH_SAMPLE_INTERVAL_S: Final = 0.2


_txn_ids = itertools.count()


def txn_id() -> str:
    return f"bench{os.getpid()}.{time.monotonic_ns()}.{next(_txn_ids)}"


def send_path(room_id: str, txn: str, event_type: str = "m.room.message") -> str:
    return f"{CLIENT_V3}/rooms/{q(room_id)}/send/{q(event_type)}/{q(txn)}"


def text(body: str) -> JsonDict:
    return {"msgtype": "m.text", "body": body}


# -- HTTP ------------------------------------------------------------------------------


class Http:
    """One persistent HTTP/1.1 connection, as a client or bot holds one.

    The harness's ``MatrixClient`` opens a connection per request, which is fine
    for setting up rooms but would add a TCP handshake to every measured request.
    Not thread-safe: one per thread.
    """

    def __init__(self, base_url: str, access_token: str | None, timeout: float = 60) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"need host and port in {base_url!r}")
        self._host: str = parts.hostname
        self._port: int = parts.port
        self._token = access_token
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, path: str, body: JsonDict | None = None
    ) -> tuple[JsonDict, float]:
        """Return the decoded body and ``time.monotonic()`` right after it was read.

        A dropped keep-alive connection is retried once on a new one; every request
        the benchmark sends is idempotent (sends carry their transaction ID).
        """
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, self._timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                continue
            received = time.monotonic()
            if response.status >= 300:
                raise BenchError(f"{method} {path}: HTTP {response.status}: {raw[:300]!r}")
            parsed = json.loads(raw) if raw else {}
            if not isinstance(parsed, dict):
                raise BenchError(f"{method} {path}: expected a JSON object, got {raw[:100]!r}")
            return parsed, received
        raise AssertionError("unreachable")

    def send(self, room_id: str, content: JsonDict) -> tuple[str, float]:
        result, received = self.request("PUT", send_path(room_id, txn_id()), content)
        return str(result["event_id"]), received

    def sync(
        self, since: str | None, timeout_ms: int, sync_filter: JsonDict
    ) -> tuple[JsonDict, float]:
        query: dict[str, str] = {
            "timeout": str(timeout_ms),
            "filter": json.dumps(sync_filter, separators=(",", ":")),
        }
        if since is not None:
            query["since"] = since
        return self.request("GET", f"{CLIENT_V3}/sync?{urllib.parse.urlencode(query)}")


def scrape_metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text exposition: (name, labels, value)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        body: str = response.read().decode()
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name, _, label_text = name_labels.partition("{")
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        try:
            samples.append((name, labels, float(value)))
        except ValueError:
            continue
    return samples


def queue_depth(hs: Homeserver) -> float:
    for name, labels, value in scrape_metrics(hs.metrics_url):
        if name == QUEUE_DEPTH_METRIC and labels.get("server_name") == hs.server_name:
            return value
    return 0.0


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    if pid is None:
        return math.nan
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class ServerCost:
    """Counters that show where the homeserver spent its time during a phase."""

    ferry_cpu_s: float = 0.0
    ferry_db_s: float = 0.0
    ferry_db_txns: float = 0.0
    ferry_passes: float = 0.0  # background runs started; one run loops over passes
    module_txn_s: dict[str, float] = field(default_factory=dict)
    module_txn_count: dict[str, float] = field(default_factory=dict)
    all_txn_s: float = 0.0

    @classmethod
    def read(cls, hs: Homeserver) -> ServerCost:
        cost = cls()
        for raw_name, labels, value in scrape_metrics(hs.metrics_url):
            name = raw_name.removesuffix("_total")
            process = labels.get("name")
            desc = labels.get("desc", "")
            if process == "room_connect_ferry":
                if name in (
                    "synapse_background_process_ru_utime_seconds",
                    "synapse_background_process_ru_stime_seconds",
                ):
                    cost.ferry_cpu_s += value
                elif name == "synapse_background_process_db_txn_duration_seconds":
                    cost.ferry_db_s += value
                elif name == "synapse_background_process_db_txn_count":
                    cost.ferry_db_txns += value
                elif name == "synapse_background_process_start_count":
                    cost.ferry_passes += value
            if name == "synapse_storage_transaction_time_sum":
                cost.all_txn_s += value
                if desc.startswith("room_connect_"):
                    cost.module_txn_s[desc] = value
            elif name == "synapse_storage_transaction_time_count" and desc.startswith(
                "room_connect_"
            ):
                cost.module_txn_count[desc] = value
        return cost

    def minus(self, before: ServerCost) -> ServerCost:
        return ServerCost(
            ferry_cpu_s=self.ferry_cpu_s - before.ferry_cpu_s,
            ferry_db_s=self.ferry_db_s - before.ferry_db_s,
            ferry_db_txns=self.ferry_db_txns - before.ferry_db_txns,
            ferry_passes=self.ferry_passes - before.ferry_passes,
            module_txn_s={
                k: v - before.module_txn_s.get(k, 0.0) for k, v in self.module_txn_s.items()
            },
            module_txn_count={
                k: v - before.module_txn_count.get(k, 0.0) for k, v in self.module_txn_count.items()
            },
            all_txn_s=self.all_txn_s - before.all_txn_s,
        )

    @property
    def module_txns(self) -> float:
        """The module's own database transactions (its ``room_connect_*`` descs)."""
        return sum(self.module_txn_count.values())


def settled_cost(hs: Homeserver) -> ServerCost:
    """The counters once the module's transactions stop moving, so that work an
    earlier step set off (a notice, a cursor write after the pointer was
    visible) is not charged to the next phase."""
    previous = ServerCost.read(hs)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL_S)
        current = ServerCost.read(hs)
        if current.module_txn_count == previous.module_txn_count:
            return current
        previous = current
    raise BenchError(f"the module's transactions did not settle in {SETTLE_TIMEOUT_S} s")


# -- statistics ---------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class LatencyStats:
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencyStats:
        ms = [s * 1000 for s in seconds]
        return cls(
            len(ms),
            percentile(ms, 50),
            percentile(ms, 90),
            percentile(ms, 99),
            max(ms) if ms else math.nan,
        )


# -- the observer: a member of B long-polling /sync ---------------------------------


def only(user_id: str) -> Callable[[str], bool]:
    """Counts the messages of ``user_id`` alone."""
    return lambda sender: sender == user_id


def none_counts(sender: str) -> bool:
    return False


class Observer(threading.Thread):
    """Long-polls ``/sync`` as a member of the target rooms and notes when each
    tagged message first arrives (``time.monotonic()`` right after the response
    was read, before it is parsed)."""

    def __init__(
        self, base_url: str, access_token: str, senders: dict[str, Callable[[str], bool]]
    ) -> None:
        super().__init__(name="observer", daemon=True)
        self._http = Http(base_url, access_token, timeout=OBSERVER_POLL_MS / 1000 + 30)
        # Room ID -> whose messages count there (the ferry bot or its ghosts, the relay bot).
        self._senders = senders
        self._filter = bench_servers.quiet_sync_filter(
            {
                "rooms": sorted(senders),
                "timeline": {"limit": 1000},
                "state": {"lazy_load_members": True},
            }
        )
        self._since: str | None = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.arrivals: dict[tuple[str, int], float] = {}
        # Who sent what first arrived for each key: the ghost phase counts senders.
        self.senders_of: dict[tuple[str, int], str] = {}
        self.limited_syncs = 0
        self._last_seen: dict[str, str] = {}  # room -> newest event looked at
        self.error: BaseException | None = None

    def prime(self) -> None:
        """Initial sync: everything before now is history, not an arrival."""
        response, _ = self._http.sync(None, 0, self._filter)
        self._since = str(response["next_batch"])
        for room_id, room in response.get("rooms", {}).get("join", {}).items():
            events = room.get("timeline", {}).get("events", [])
            if events:
                self._last_seen[room_id] = str(events[-1]["event_id"])

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                response, received = self._http.sync(self._since, OBSERVER_POLL_MS, self._filter)
                self._since = str(response["next_batch"])
                self._record(response, received)
        except BaseException as exc:
            self.error = exc
            with self._changed:
                self._changed.notify_all()
        finally:
            self._http.close()

    def _record(self, response: JsonDict, received: float) -> None:
        found: list[tuple[tuple[str, int], str]] = []
        joined: dict[str, JsonDict] = response.get("rooms", {}).get("join", {})
        for room_id, room in joined.items():
            counts = self._senders.get(room_id, none_counts)
            timeline = room.get("timeline", {})
            events: list[JsonDict] = timeline.get("events", [])
            last_seen = self._last_seen.get(room_id)
            if timeline.get("limited") and last_seen is not None:
                # A client fills a gap with /messages; what it finds arrives now.
                self.limited_syncs += 1
                events = _backfill(self._http, room_id, timeline, last_seen) + events
                received = time.monotonic()
            if events:
                self._last_seen[room_id] = str(events[-1]["event_id"])
            for event in events:
                sender = str(event.get("sender"))
                if event.get("type") != "m.room.message" or not counts(sender):
                    continue
                match = TAG_RE.search(str(event.get("content", {}).get("body", "")))
                if match:
                    found.append(((match.group(1), int(match.group(2))), sender))
        if found:
            with self._changed:
                for key, sender in found:
                    self.arrivals.setdefault(key, received)
                    self.senders_of.setdefault(key, sender)
                self._changed.notify_all()

    def wait_for(self, keys: Iterable[tuple[str, int]], timeout: float) -> set[tuple[str, int]]:
        """Wait until every key has arrived; return those still missing."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                missing = wanted - self.arrivals.keys()
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0 or self.error is not None:
                    break
                self._changed.wait(min(remaining, 1.0))
        self.check()
        return missing

    def arrival(self, key: tuple[str, int]) -> float | None:
        with self._lock:
            return self.arrivals.get(key)

    def check(self) -> None:
        if self.error is not None:
            raise BenchError(f"observer /sync failed: {self.error!r}") from self.error

    def stop(self) -> None:
        self._stop_event.set()


# -- the relay bot: client-server API only, a separate process -----------------------


@dataclass(frozen=True)
class RelaySpec:
    base_url: str
    access_token: str
    user_id: str
    source_room: str
    target_room: str
    # A stop waits for the current long-poll: short runs poll briefly.
    poll_ms: int = RELAY_POLL_MS


def relay_bot_main(
    spec: RelaySpec,
    ready: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    results: multiprocessing.Queue[JsonDict],
) -> None:
    """A minimal relay bridge: sync on the source room, copy each human message.

    What matterbridge-style relays do with the client-server API: one ``/sync``
    loop; for each new ``m.room.message`` from someone else in the source room,
    one ``PUT /send`` into the target room with the sender's display name in
    front. Runs in its own process so it neither shares the benchmark's GIL
    nor gets any help from it.
    """
    sync_http = Http(spec.base_url, spec.access_token, timeout=spec.poll_ms / 1000 + 30)
    send_http = Http(spec.base_url, spec.access_token)
    sync_filter: JsonDict = {
        "room": {"timeline": {"limit": 1000}, "state": {"lazy_load_members": True}},
        "presence": {"not_types": ["*"]},
    }
    names: dict[str, str] = {}
    relayed = 0
    limited = 0
    last_seen: str | None = None  # the newest source-room event looked at
    error: str | None = None
    try:
        response, _ = sync_http.sync(None, 0, sync_filter)
        since = str(response["next_batch"])
        initial = response.get("rooms", {}).get("join", {}).get(spec.source_room, {})
        history = initial.get("timeline", {}).get("events", [])
        last_seen = str(history[-1]["event_id"]) if history else None
        ready.set()
        while not stop.is_set():
            response, _ = sync_http.sync(since, spec.poll_ms, sync_filter)
            since = str(response["next_batch"])
            room = response.get("rooms", {}).get("join", {}).get(spec.source_room, {})
            timeline = room.get("timeline", {})
            events: list[JsonDict] = timeline.get("events", [])
            if timeline.get("limited") and last_seen is not None:
                # A gap: Synapse sent only the newest events. Fetch the rest, as
                # a bridge must, or messages would be lost.
                limited += 1
                events = _backfill(sync_http, spec.source_room, timeline, last_seen) + events
            if events:
                last_seen = str(events[-1]["event_id"])
            for event in room.get("state", {}).get("events", []):
                _remember_name(names, event)
            for event in events:
                _remember_name(names, event)
                if event.get("type") != "m.room.message" or event.get("sender") == spec.user_id:
                    continue
                content = event.get("content", {})
                if content.get("msgtype") not in ("m.text", "m.emote"):
                    continue
                sender = str(event["sender"])
                name = names.get(sender, sender)
                body = str(content.get("body", ""))
                send_http.send(
                    spec.target_room,
                    {
                        "msgtype": "m.text",
                        "body": f"{name}: {body}",
                        "format": "org.matrix.custom.html",
                        "formatted_body": (
                            f"<strong>{html.escape(name)}: </strong>{html.escape(body)}"
                        ),
                    },
                )
                relayed += 1
    except BaseException:
        error = traceback.format_exc()
    finally:
        ready.set()
        results.put({"relayed": relayed, "limited_syncs": limited, "error": error})


def _backfill(http_: Http, room_id: str, timeline: JsonDict, last_seen: str) -> list[JsonDict]:
    """The events between ``last_seen`` and a limited timeline, oldest first."""
    token = timeline.get("prev_batch")
    found: list[JsonDict] = []
    for _ in range(100):
        if token is None:
            break
        query = urllib.parse.urlencode({"dir": "b", "limit": "100", "from": str(token)})
        page, _ = http_.request("GET", f"{CLIENT_V3}/rooms/{q(room_id)}/messages?{query}")
        for event in page.get("chunk", []):
            if event.get("event_id") == last_seen:
                return found[::-1]
            found.append(event)
        if not page.get("chunk"):
            break
        token = page.get("end")
    raise BenchError(f"relay bot: could not find {last_seen} behind a gap in {room_id}")


def _remember_name(names: dict[str, str], event: JsonDict) -> None:
    if event.get("type") == "m.room.member":
        name = event.get("content", {}).get("displayname")
        if isinstance(name, str) and event.get("state_key"):
            names[str(event["state_key"])] = name


class RelayBot:
    def __init__(self, spec: RelaySpec) -> None:
        context = multiprocessing.get_context("spawn")
        self._poll_s = spec.poll_ms / 1000
        self._ready = context.Event()
        self._stop = context.Event()
        self._results: multiprocessing.Queue[JsonDict] = context.Queue()
        self._process = context.Process(
            target=relay_bot_main,
            args=(spec, self._ready, self._stop, self._results),
            name="relay-bot",
            daemon=True,
        )

    def start(self, timeout: float = 60) -> None:
        self._process.start()
        if not self._ready.wait(timeout) or not self._process.is_alive():
            raise BenchError("relay bot did not start")

    def check(self) -> None:
        if not self._process.is_alive():
            raise BenchError(f"relay bot exited: {self._result(1.0)}")

    def _result(self, timeout: float) -> JsonDict:
        try:
            return self._results.get(timeout=timeout)
        except Exception:
            return {"relayed": None, "error": "no result"}

    def stop(self) -> JsonDict:
        """Stop after its current long-poll; return its counters."""
        self._stop.set()
        result = self._result(self._poll_s + 15 if self._process.is_alive() else 1.0)
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        return result


# -- pacing ---------------------------------------------------------------------------


def sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_threads(
    threads: Sequence[threading.Thread], errors: list[BaseException], what: str
) -> None:
    """Start every thread, wait for them all, then raise the first error that any
    of them put in ``errors`` as "<what> failed: <error>"."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"{what} failed: {errors[0]!r}") from errors[0]


@dataclass
class Send:
    """One benchmark message: when its PUT started and returned."""

    path: str
    index: int
    started: float = math.nan
    returned: float = math.nan
    late_s: float = 0.0


# -- the phases -------------------------------------------------------------------------


@dataclass
class Setup:
    mod: Homeserver
    plain: Homeserver
    pair: Pair
    relay_user: MatrixClient
    room_a2: str
    room_b2: str
    tp_mod: tuple[MatrixClient, str]
    tp_plain: tuple[MatrixClient, str]


@dataclass
class LatencyResult:
    module: LatencyStats
    relay: LatencyStats
    late_sends: int
    max_late_ms: float
    send_ms_p50: float
    observer_limited_syncs: int
    cost: ServerCost


@dataclass
class ThroughputResult:
    messages: int
    rounds: int
    # Every message the server with the module took in its unconnected room
    # (warm-up included), and the module's database transactions meanwhile.
    unconnected_sends: int
    unconnected_module_txns: float
    with_module_s: float
    without_module_s: float
    with_module_rate: float
    without_module_rate: float
    with_round_rates: list[float]
    without_round_rates: list[float]
    # Synapse process CPU per send (all threads, /proc); steadier than wall-clock rates.
    with_cpu_ms: float
    without_cpu_ms: float

    @property
    def overhead(self) -> float:
        return 1 - self.with_module_rate / self.without_module_rate

    def paired_overheads(self) -> list[float]:
        """1 - with/without per round: each round ran both servers back to back."""
        return [
            1 - with_ / without
            for with_, without in zip(self.with_round_rates, self.without_round_rates, strict=True)
        ]


@dataclass
class BacklogResult:
    path: str
    offered_rate: float
    seconds: float
    sent: int
    send_rate: float
    send_ms_p50: float
    send_ms_p99: float
    latency: LatencyStats
    first_quarter_p50_ms: float
    last_quarter_p50_ms: float
    per_second_p50_ms: list[float]
    drain_s: float
    drain_rate: float
    missing: int
    depth_samples: list[tuple[float, float]]
    cost: ServerCost | None

    @property
    def max_depth(self) -> float:
        return max((d for _, d in self.depth_samples), default=math.nan)

    def depth_quarter_means(self) -> tuple[float, float]:
        if not self.depth_samples:
            return math.nan, math.nan
        end = self.seconds
        first = [d for t, d in self.depth_samples if t <= end / 4]
        last = [d for t, d in self.depth_samples if 3 * end / 4 <= t <= end]
        return _mean(first), _mean(last)

    @property
    def kept_up(self) -> bool:
        """No growth: the latency of the last quarter of sending is not far above
        the first quarter's, and the last message lands within a second of the
        last send, or within the first quarter's typical latency when the server
        itself is that slow (then there was a wait but no backlog)."""
        return (
            self.missing == 0
            and self.drain_s <= max(DRAIN_TARGET_S, self.first_quarter_p50_ms / 1000)
            and self.last_quarter_p50_ms <= 2 * self.first_quarter_p50_ms + 100
        )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# A fresh database has ~50 background updates, which Synapse runs one batch a
# second for its first minute; they would land in the middle of the measurements.
# Both servers run them back to back instead, and the benchmark waits for them.
BENCH_OVERRIDES: Final[JsonDict] = {"background_updates": {"sleep_enabled": False}}


def start_servers(
    base_dir: Path, servers: list[Homeserver], *, settle: bool
) -> tuple[Homeserver, Homeserver]:
    """Start both servers at once; ``servers`` collects them for clean-up. With
    ``settle``, wait until they have finished their background updates: the
    figures of a short run are not for reading, and its counts do not care."""
    # Ghosts are the server's default; (a) to (d) ask for the bot in their
    # consents (it is compared with a relay bot), (g) compares the two.
    mod, plain = create_pair(
        base_dir,
        servers,
        names=("bench-module", "bench-plain"),
        config_overrides=BENCH_OVERRIDES,
    )
    start_together((mod, plain))
    if "bot_user_id" not in mod.info():
        raise BenchError("the module is not answering on the homeserver that should load it")
    for hs in (mod, plain) if settle else ():
        wait_for_background_updates(hs)
    return mod, plain


def wait_for_background_updates(hs: Homeserver, timeout: float = 120) -> None:
    """Until Synapse has deleted every row of its ``background_updates`` table."""
    deadline = time.monotonic() + timeout
    database = sqlite3.connect(f"file:{hs.directory / 'homeserver.db'}?mode=ro", uri=True)
    try:
        while database.execute("SELECT count(*) FROM background_updates").fetchone()[0]:
            if time.monotonic() > deadline:
                raise BenchError(f"{hs.name}: background updates still running after {timeout} s")
            time.sleep(0.5)
    finally:
        database.close()


def throughput_room(hs: Homeserver, state_events: int) -> tuple[MatrixClient, str]:
    """An unconnected room, with ``state_events`` extra state events if asked.

    Synapse hands the module's ``check_event_allowed`` and ``on_new_event``
    callbacks the room's state, which it loads for every event; a room with a
    large state (many members) shows what that costs.
    """
    sender = hs.register(unique("tp"), displayname="Throughput")
    # Creating a room with thousands of state events takes minutes on a slow machine.
    sender.request_timeout = 1800
    initial_state = [
        {"type": "org.example.bench.filler", "state_key": str(i), "content": {"n": i}}
        for i in range(state_events)
    ]
    return sender, sender.create_room(name=unique("tp"), initial_state=initial_state)


def setup_rooms(mod: Homeserver, plain: Homeserver, state_events: int) -> Setup:
    # Everything at once: a large initial state takes a while, and the servers
    # mostly wait on their databases.
    rooms: dict[str, tuple[MatrixClient, str]] = {}
    errors: list[BaseException] = []

    def create(key: str, hs: Homeserver) -> None:
        try:
            rooms[key] = throughput_room(hs, state_events)
        except BaseException as exc:
            errors.append(exc)

    pairs: list[tuple[Pair, MatrixClient, str, str]] = []

    def connect_rooms() -> None:
        try:
            # The bot sends, as in the recorded runs before ghosts; (g) compares ghosts.
            pair = connected_pair(mod, senders="bot")
            relay_user = mod.register(unique("relay"), displayname="Relay")
            room_a2 = pair.alice.create_room(name=unique("A-relay"), invite=[relay_user.user_id])
            room_b2 = pair.bob.create_room(name=unique("B-relay"), invite=[relay_user.user_id])
            relay_user.join(room_a2)
            relay_user.join(room_b2)
            pairs.append((pair, relay_user, room_a2, room_b2))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=create, args=(key, hs))
        for key, hs in (("with", mod), ("without", plain))
    ]
    threads.append(threading.Thread(target=connect_rooms))
    run_threads(threads, errors, "setting up the rooms")
    [(pair, relay_user, room_a2, room_b2)] = pairs
    tp_mod, tp_plain = rooms["with"], rooms["without"]
    return Setup(mod, plain, pair, relay_user, room_a2, room_b2, tp_mod, tp_plain)


def run_throughput(setup: Setup, messages: int, rounds: int, warmup: int) -> ThroughputResult:
    """Sequential PUT /send by one client; the two servers alternate ABBA."""
    targets = {
        "with": (Http(setup.mod.client_url, setup.tp_mod[0].access_token), setup.tp_mod[1]),
        "without": (
            Http(setup.plain.client_url, setup.tp_plain[0].access_token),
            setup.tp_plain[1],
        ),
    }
    before = settled_cost(setup.mod)
    for http_, room in targets.values():
        for i in range(warmup):
            http_.send(room, text(f"warm-up {i}"))
    pids = {"with": setup.mod.process.pid, "without": setup.plain.process.pid}
    per_round = max(1, messages // rounds)
    elapsed = {"with": 0.0, "without": 0.0}
    cpu = {"with": 0.0, "without": 0.0}
    round_rates: dict[str, list[float]] = {"with": [], "without": []}
    counter = itertools.count()
    for r in range(rounds):
        order = ("with", "without") if r % 2 == 0 else ("without", "with")
        for key in order:
            http_, room = targets[key]
            cpu_before = process_cpu_s(pids[key])
            start = time.monotonic()
            for _ in range(per_round):
                http_.send(room, text(f"throughput {next(counter)}"))
            took = time.monotonic() - start
            cpu[key] += process_cpu_s(pids[key]) - cpu_before
            elapsed[key] += took
            round_rates[key].append(per_round / took)
    for http_, _ in targets.values():
        http_.close()
    total = per_round * rounds
    module_txns = settled_cost(setup.mod).minus(before).module_txns
    return ThroughputResult(
        messages=total,
        rounds=rounds,
        unconnected_sends=warmup + total,
        unconnected_module_txns=module_txns,
        with_module_s=elapsed["with"],
        without_module_s=elapsed["without"],
        with_module_rate=total / elapsed["with"],
        without_module_rate=total / elapsed["without"],
        with_round_rates=round_rates["with"],
        without_round_rates=round_rates["without"],
        with_cpu_ms=cpu["with"] / total * 1000,
        without_cpu_ms=cpu["without"] / total * 1000,
    )


def run_latency(
    setup: Setup, observer: Observer, relay: RelayBot, messages: int, rate: float, warmup: int
) -> LatencyResult:
    """Both paths at ``rate`` messages/s each, the relay path half a period later."""
    token = setup.pair.alice.access_token
    https = {
        "m": Http(setup.mod.client_url, token),
        "r": Http(setup.mod.client_url, token),
    }
    rooms = {"m": setup.pair.room_a, "r": setup.room_a2}
    # Warm-up: the first message of each path pays for caches and connections.
    for path in ("m", "r"):
        for i in range(warmup):
            https[path].send(rooms[path], text(f"bench:w{path}:{i}"))
    missing = observer.wait_for([(f"w{p}", i) for p in ("m", "r") for i in range(warmup)], 60)
    if missing:
        raise BenchError(f"warm-up messages never arrived: {sorted(missing)[:5]}")
    relay.check()

    before = settled_cost(setup.mod)
    sends: list[Send] = []
    period = 1 / rate
    t0 = time.monotonic() + 0.2
    for i in range(messages):
        for offset, path in ((0.0, "m"), (0.5, "r")):
            scheduled = t0 + (i + offset) * period
            sleep_until(scheduled)
            send = Send(path, i)
            send.started = time.monotonic()
            send.late_s = max(0.0, send.started - scheduled)
            _, send.returned = https[path].send(rooms[path], text(f"bench:{path}:{i}"))
            sends.append(send)
    for h in https.values():
        h.close()
    missing = observer.wait_for([(s.path, s.index) for s in sends], 60)
    cost = settled_cost(setup.mod).minus(before)
    relay.check()
    if missing:
        raise BenchError(f"{len(missing)} messages never reached B: {sorted(missing)[:5]}...")
    latencies: dict[str, list[float]] = {"m": [], "r": []}
    for s in sends:
        arrived = observer.arrival((s.path, s.index))
        assert arrived is not None
        latencies[s.path].append(arrived - s.started)
    late = [s.late_s for s in sends if s.late_s > period / 2]
    return LatencyResult(
        module=LatencyStats.of(latencies["m"]),
        relay=LatencyStats.of(latencies["r"]),
        late_sends=len(late),
        max_late_ms=max((s.late_s for s in sends), default=0.0) * 1000,
        send_ms_p50=percentile([(s.returned - s.started) * 1000 for s in sends], 50),
        observer_limited_syncs=observer.limited_syncs,
        cost=cost,
    )


class DepthSampler(threading.Thread):
    """Scrapes the ferry queue-depth gauge every DEPTH_SAMPLE_INTERVAL_S."""

    def __init__(self, hs: Homeserver, t0: float) -> None:
        super().__init__(name="depth-sampler", daemon=True)
        self._hs = hs
        self._t0 = t0
        self._stop_event = threading.Event()
        self.samples: list[tuple[float, float]] = []
        self.errors = 0

    def run(self) -> None:
        while not self._stop_event.wait(DEPTH_SAMPLE_INTERVAL_S):
            try:
                self.samples.append((time.monotonic() - self._t0, queue_depth(self._hs)))
            except OSError:
                self.errors += 1

    def stop(self) -> list[tuple[float, float]]:
        self._stop_event.set()
        self.join(10)
        return self.samples


def paced_sends(
    base_url: str,
    token: str,
    room_id: str,
    path: str,
    rate: float,
    seconds: float,
    t0: float,
    workers: int = 4,
) -> list[Send]:
    """Open-loop load for ``seconds``: message i is due at t0 + i/rate whatever
    earlier sends took; no send starts after t0 + seconds.

    A few connections share the schedule, so one slow answer does not hold back
    the messages due after it (one sequential client could not offer 100/s once
    a send takes more than 10 ms). When the server answers too slowly for the
    schedule, fewer messages go out, and the achieved rate says so.
    """
    end = t0 + seconds
    indexes = itertools.count()
    lock = threading.Lock()
    sends: list[Send] = []
    errors: list[BaseException] = []

    def worker() -> None:
        http_ = Http(base_url, token)
        try:
            while not errors:
                with lock:
                    i = next(indexes)
                scheduled = t0 + i / rate
                if scheduled >= end:
                    return
                sleep_until(scheduled)
                send = Send(path, i)
                send.started = time.monotonic()
                if send.started >= end:
                    return
                send.late_s = max(0.0, send.started - scheduled)
                _, send.returned = http_.send(room_id, text(f"bench:{path}:{i}"))
                with lock:
                    sends.append(send)
        except BaseException as exc:
            errors.append(exc)
        finally:
            http_.close()

    threads = [threading.Thread(target=worker, name=f"sender-{n}") for n in range(workers)]
    run_threads(threads, errors, f"sending at {rate}/s")
    if not sends:
        raise BenchError(f"no message could be sent in {seconds} s")
    return sorted(sends, key=lambda send: send.index)


def run_backlog(
    hs: Homeserver,
    observer: Observer,
    token: str,
    room_id: str,
    path: str,
    rate: float,
    seconds: float,
    *,
    sample_depth: bool,
) -> BacklogResult:
    before = settled_cost(hs) if sample_depth else None
    t0 = time.monotonic() + 0.5
    sampler = DepthSampler(hs, t0) if sample_depth else None
    if sampler is not None:
        sampler.start()
    sends = paced_sends(hs.client_url, token, room_id, path, rate, seconds, t0)
    last_returned = max(s.returned for s in sends)
    drain_timeout = max(120.0, 10 * seconds)
    missing = observer.wait_for([(path, s.index) for s in sends], drain_timeout)
    arrivals = [observer.arrival((path, s.index)) for s in sends]
    landed = [a for a in arrivals if a is not None]
    drain_s = (max(landed) - last_returned) if landed and not missing else math.inf
    # With the senders gone, what lands after the last send shows how fast the
    # path empties a backlog on its own.
    after = [a for a in landed if a > last_returned]
    drain_rate = len(after) / (max(after) - last_returned) if len(after) >= 20 else math.nan
    # Let the gauge settle after the last pointer so the samples show the end too.
    time.sleep(1.0 if sampler is not None else 0.0)
    samples = sampler.stop() if sampler is not None else []
    cost = settled_cost(hs).minus(before) if before is not None else None

    latencies = [(s, a - s.started) for s, a in zip(sends, arrivals, strict=True) if a is not None]
    first = [lat for s, lat in latencies if s.started - t0 < seconds / 4]
    last = [lat for s, lat in latencies if s.started - t0 >= 3 * seconds / 4]
    per_second: list[float] = []
    for second in range(math.ceil(seconds)):
        bucket = [lat for s, lat in latencies if second <= s.started - t0 < second + 1]
        per_second.append(percentile(bucket, 50) * 1000)
    span = max(s.returned for s in sends) - min(s.started for s in sends)
    send_ms = [(s.returned - s.started) * 1000 for s in sends]
    return BacklogResult(
        path=path,
        offered_rate=rate,
        seconds=seconds,
        sent=len(sends),
        send_rate=len(sends) / span,
        send_ms_p50=percentile(send_ms, 50),
        send_ms_p99=percentile(send_ms, 99),
        latency=LatencyStats.of([lat for _, lat in latencies]),
        first_quarter_p50_ms=percentile(first, 50) * 1000,
        last_quarter_p50_ms=percentile(last, 50) * 1000,
        per_second_p50_ms=per_second,
        drain_s=drain_s,
        drain_rate=drain_rate,
        missing=len(missing),
        depth_samples=samples,
        cost=cost,
    )


# -- report -------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


@dataclass
class PointerTally:
    """Pointers in B per message sent in A, over the whole run."""

    originals: int
    fewest: int  # pointers of the original with the fewest
    most: int
    strays: int  # pointers in B whose original is not a message sent in A


def pointer_tally(pair: Pair) -> PointerTally:
    originals = [
        str(e["event_id"])
        for e in all_events(pair.alice, pair.room_a)
        if e.get("type") == "m.room.message" and e.get("sender") == pair.alice.user_id
    ]
    tally = Counter(
        str(p["content"][POINTER]["event_id"]) for p in pointers_in(pair.bob, pair.room_b)
    )
    per_original = [tally[event_id] for event_id in originals]
    return PointerTally(
        originals=len(originals),
        fewest=min(per_original, default=0),
        most=max(per_original, default=0),
        strays=sum(tally.values()) - sum(per_original),
    )


@dataclass
class Counts:
    """What the module did, counted: unlike the times, these do not depend on
    the machine's speed, so tests/test_bench.py asserts them."""

    # The module's own database transactions (feed, ferry, and the expansion of
    # the pointers the observer reads) per pointer, over (a) and (d).
    module_txns_per_pointer: float
    # ... while the server took messages into a room without connections in (c).
    unconnected_sends: int
    unconnected_module_txns: float
    pointers: PointerTally

    @classmethod
    def of(
        cls,
        latency: LatencyResult,
        throughput: ThroughputResult,
        backlog: BacklogResult,
        tally: PointerTally,
    ) -> Counts:
        costs = [latency.cost] + ([backlog.cost] if backlog.cost is not None else [])
        pointers = latency.module.n + backlog.sent
        return cls(
            module_txns_per_pointer=sum(c.module_txns for c in costs) / pointers,
            unconnected_sends=throughput.unconnected_sends,
            unconnected_module_txns=throughput.unconnected_module_txns,
            pointers=tally,
        )


def count_lines(counts: Counts) -> Iterator[str]:
    tally = counts.pointers
    yield (
        f"COUNT module DB txns per pointer: {counts.module_txns_per_pointer:.2f} "
        "(feed, ferry and expansion, over (a) and (d))"
    )
    yield (
        f"COUNT module DB txns for {counts.unconnected_sends} messages in an unconnected "
        f"room: {counts.unconnected_module_txns:.0f}"
    )
    yield (
        f"COUNT pointers per original: {tally.fewest}..{tally.most} over {tally.originals} "
        f"originals, {tally.strays} strays"
    )


@dataclass
class Results:
    latency_rate: float
    latency: LatencyResult
    throughput: ThroughputResult
    backlog: BacklogResult
    relay_backlog: BacklogResult
    relay_counts: JsonDict
    counts: Counts
    ghosts: GhostResult | None = None


def auto_rate(capacity: float, cap: float) -> float:
    """A latency send rate per path that keeps the homeserver mostly idle.

    Both paths together send 4 events per period (2 originals, a pointer, a
    relayed copy) and serve 3 /sync responses; at capacity/8 per path the
    server is busy well under half the time, so the figures are latency and
    not queueing.
    """
    return max(0.5, min(cap, round(capacity / 8, 1)))


def cost_lines(cost: ServerCost, pointers: int) -> Iterator[str]:
    """Where the module's time went, per message ferried (from Synapse's metrics)."""
    if not pointers:
        return
    per = 1000 / pointers
    yield (
        f"  ferry background process per pointer: {fmt(cost.ferry_cpu_s * per)} ms CPU, "
        f"{fmt(cost.ferry_db_txns / pointers)} DB txns taking {fmt(cost.ferry_db_s * per)} ms "
        f"({fmt(cost.ferry_passes / pointers, 2)} wake-ups)"
    )
    busiest = sorted(cost.module_txn_count.items(), key=lambda kv: -kv[1])
    yield "  module's own DB txns per pointer: " + ", ".join(
        f"{desc.removeprefix('room_connect_')} {fmt(count / pointers)}"
        f" ({fmt(cost.module_txn_s.get(desc, 0.0) * per)} ms)"
        for desc, count in busiest
        if count
    )


def report(args: argparse.Namespace, r: Results, started: float) -> Iterator[str]:
    latency, throughput, backlog, relay_backlog = (
        r.latency,
        r.throughput,
        r.backlog,
        r.relay_backlog,
    )
    yield ""
    yield (
        f"(a)/(b) latency, send in A -> visible in B's /sync: {args.messages} messages per path "
        f"at {fmt(r.latency_rate)}/s each, the paths interleaved (ms)"
    )
    yield f"  {'path':<34}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
    for label, stats in (
        ("(a) module ferry (pointer event)", latency.module),
        ("(b) relay bot (C-S API, /sync)", latency.relay),
    ):
        yield (
            f"  {label:<34}{stats.n:>6}{fmt(stats.p50_ms):>9}{fmt(stats.p90_ms):>9}"
            f"{fmt(stats.p99_ms):>9}{fmt(stats.max_ms):>9}"
        )
    yield (
        f"  client PUT /send p50 {fmt(latency.send_ms_p50)} ms; {latency.late_sends} sends "
        f"started over half a period late (max {fmt(latency.max_late_ms)} ms)"
    )
    yield from cost_lines(latency.cost, latency.module.n)
    yield ""
    state = f" with {args.throughput_state} extra state events" if args.throughput_state else ""
    yield (
        f"(c) send throughput: sequential PUT /send by one client into an unconnected room"
        f"{state}, {throughput.rounds} alternating rounds (ABBA)"
    )
    yield (
        f"  {'server':<18}{'msgs':>6}{'seconds':>9}{'msg/s':>8}{'round min':>11}"
        f"{'round max':>11}{'CPU ms/send':>13}"
    )
    rows = (
        ("with module", throughput.with_module_s, throughput.with_module_rate,
         throughput.with_round_rates, throughput.with_cpu_ms),
        ("without module", throughput.without_module_s, throughput.without_module_rate,
         throughput.without_round_rates, throughput.without_cpu_ms),
    )  # fmt: skip
    for label, seconds, rate, rounds, cpu_ms in rows:
        yield (
            f"  {label:<18}{throughput.messages:>6}{fmt(seconds, 2):>9}{fmt(rate):>8}"
            f"{fmt(min(rounds)):>11}{fmt(max(rounds)):>11}{fmt(cpu_ms, 2):>13}"
        )
    paired = throughput.paired_overheads()
    yield (
        f"  overhead per round (1 - with/without): median {percentile(paired, 50) * 100:+.1f}%, "
        f"quartiles {percentile(paired, 25) * 100:+.1f}% .. {percentile(paired, 75) * 100:+.1f}%"
    )
    yield ""
    yield (
        f"(d) backlog: {fmt(args.backlog_rate, 0)} msg/s offered for "
        f"{fmt(args.backlog_seconds, 0)} s by 4 connections (latency ms)"
    )
    yield (
        f"  {'path':<18}{'sent':>6}{'sent/s':>8}{'p50':>8}{'p99':>8}{'1st q p50':>11}"
        f"{'last q p50':>11}{'max depth':>10}{'drain s':>9}{'drain/s':>9}  kept up"
    )
    for label, result in (("module ferry", backlog), ("relay bot (ref.)", relay_backlog)):
        depth = fmt(result.max_depth, 0) if result.depth_samples else "n/a"
        yield (
            f"  {label:<18}{result.sent:>6}{fmt(result.send_rate):>8}"
            f"{fmt(result.latency.p50_ms, 0):>8}{fmt(result.latency.p99_ms, 0):>8}"
            f"{fmt(result.first_quarter_p50_ms, 0):>11}{fmt(result.last_quarter_p50_ms, 0):>11}"
            f"{depth:>10}{fmt(result.drain_s, 2):>9}{fmt(result.drain_rate):>9}"
            f"  {'yes' if result.kept_up else 'NO'}"
        )
    for label, result in (("module ferry", backlog), ("relay bot", relay_backlog)):
        yield (
            f"  {label}: p50 latency by second of sending (ms): "
            + " ".join(fmt(v, 0) for v in result.per_second_p50_ms)
        )
    first_depth, last_depth = backlog.depth_quarter_means()
    yield (
        f"  {QUEUE_DEPTH_METRIC}: mean {fmt(first_depth)} in the first quarter of "
        f"sending, {fmt(last_depth)} in the last; client PUT /send p50 "
        f"{fmt(backlog.send_ms_p50)} ms, p99 {fmt(backlog.send_ms_p99)} ms"
    )
    if backlog.cost is not None:
        yield from cost_lines(backlog.cost, backlog.sent)
    yield (
        f"  limited /sync timelines: observer {latency.observer_limited_syncs}, relay bot "
        f"{r.relay_counts.get('limited_syncs', '?')} (backfilled with /messages); relay bot "
        f"copied {r.relay_counts.get('relayed', '?')} messages in all"
    )
    yield ""
    ratio = latency.module.p50_ms / latency.relay.p50_ms
    yield (
        f"RATIO latency: module p50 / relay p50 = {ratio:.2f} "
        f"({fmt(latency.module.p50_ms)} / {fmt(latency.relay.p50_ms)} ms; "
        f"target <= {LATENCY_TARGET}: {met(ratio <= LATENCY_TARGET)})"
    )
    overhead = throughput.overhead
    cpu_overhead = throughput.with_cpu_ms / throughput.without_cpu_ms - 1
    yield (
        f"RATIO throughput overhead: 1 - with/without = {overhead * 100:.1f}% "
        f"({fmt(throughput.with_module_rate)} / {fmt(throughput.without_module_rate)} msg/s; "
        f"CPU per send {cpu_overhead * 100:+.1f}%; "
        f"target < {OVERHEAD_TARGET * 100:.0f}%: {met(overhead < OVERHEAD_TARGET)})"
    )
    reached = backlog.send_rate >= 0.95 * args.backlog_rate
    yield (
        f"RATIO backlog: {fmt(args.backlog_rate, 0)} msg/s for {fmt(args.backlog_seconds, 0)} s "
        f"(server accepted {fmt(backlog.send_rate)}/s{'' if reached else ' only'}): last pointer "
        f"{fmt(backlog.drain_s, 2)} s after the last send, max queue depth "
        f"{fmt(backlog.max_depth, 0)}, p50 latency {fmt(backlog.first_quarter_p50_ms, 0)} -> "
        f"{fmt(backlog.last_quarter_p50_ms, 0)} ms (target no growth: {met(backlog.kept_up)})"
    )
    yield from count_lines(r.counts)
    if r.ghosts is not None:
        yield from ferry_ghosts_report(r.ghosts)
    yield f"total time {time.monotonic() - started:.1f} s"


def git_revision() -> str:
    # Through git: in a worktree, .git is a file and the refs live elsewhere.
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def describe_machine() -> str:
    # The installed distribution's version: importing Synapse costs seconds of CPU.
    synapse_version = importlib.metadata.version("matrix-synapse")
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, Synapse {synapse_version}, "
        f"module at {git_revision()} (plus any uncommitted changes), "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="CI size: small counts, 1 s backlog")
    parser.add_argument("--messages", type=int, help="latency messages per path (full: 500)")
    parser.add_argument(
        "--rate",
        type=float,
        help="latency sends/s per path (default: 1/8 of the measured send capacity, at most 20)",
    )
    parser.add_argument("--throughput-messages", type=int, help="sends per server (full: 500)")
    parser.add_argument("--rounds", type=int, help="ABBA rounds for throughput (full: 20)")
    parser.add_argument(
        "--warmup", type=int, help="warm-up messages per server and path (full: 10)"
    )
    parser.add_argument(
        "--throughput-state",
        type=int,
        default=0,
        help="extra state events in the throughput rooms (default 0: a fresh room)",
    )
    parser.add_argument("--backlog-rate", type=float, default=100.0, help="messages/s")
    parser.add_argument("--backlog-seconds", type=float, help="seconds of load (full: 15)")
    parser.add_argument(
        "--ghost-messages", type=int, help="(g) steady messages per sender (full: 300)"
    )
    parser.add_argument("--new-authors", type=int, help="(g) first messages (full: 40)")
    parser.add_argument(
        "--ghosts-only", action="store_true", help="only (g): ghosts against the bot"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep server dirs and logs")
    args = parser.parse_args(argv)
    defaults = (
        (8, 8, 2, 1.0, SHORT_WARMUP_MESSAGES, 6, 3)
        if args.short
        else (500, 500, 20, 15.0, WARMUP_MESSAGES, 300, 40)
    )
    names = (
        "messages",
        "throughput_messages",
        "rounds",
        "backlog_seconds",
        "warmup",
        "ghost_messages",
        "new_authors",
    )
    for name, default in zip(names, defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    positive = (
        args.messages,
        args.throughput_messages,
        args.rounds,
        args.backlog_seconds,
        args.ghost_messages,
        args.new_authors,
    )
    if (
        args.throughput_state < 0
        or args.warmup < 0
        or min(positive) <= 0
        or args.backlog_rate <= 0
        or (args.rate is not None and args.rate <= 0)
    ):
        parser.error("counts, rates and durations must be positive")
    return args


def run(args: argparse.Namespace, print_line: Callable[[str], None]) -> int:
    started = time.monotonic()

    def out(line: str) -> None:
        print_line(line)

    def progress(line: str) -> None:
        print_line(f"[{time.monotonic() - started:6.1f} s] {line}")

    base_dir = bench_servers.make_run_dir("room-connect-bench-", keep=args.keep)
    out(
        f"synapse-room-connect ferry benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
        f"{'short' if args.short else 'full'} run"
    )
    out(f"machine: {describe_machine()}")
    servers: list[Homeserver] = []
    observer: Observer | None = None
    relay: RelayBot | None = None
    try:
        mod, plain = start_servers(base_dir, servers, settle=not args.short)
        if args.ghosts_only:
            ghosts = run_ghost_phase(args, mod, progress)
            for line in ferry_ghosts_report(ghosts):
                out(line)
            out(f"total time {time.monotonic() - started:.1f} s")
            write_json(args, {"ghosts": ghost_payload(ghosts)})
            return 0
        progress("servers up; setting up rooms")
        setup = setup_rooms(mod, plain, args.throughput_state)
        progress("rooms connected; (c) throughput")

        throughput = run_throughput(setup, args.throughput_messages, args.rounds, args.warmup)
        rate = args.rate or auto_rate(throughput.without_module_rate, 20.0)
        if args.short and not args.rate:
            # CI checks that everything runs, not the figures: keep it quick.
            rate = max(rate, 5.0)
        progress(
            f"(c) done: {fmt(throughput.with_module_rate)} vs "
            f"{fmt(throughput.without_module_rate)} msg/s; latency rate {fmt(rate)}/s per path"
            + ("" if args.rate else " (auto)")
        )

        pair = setup.pair
        assert pair.bob.access_token is not None
        assert pair.alice.access_token is not None
        assert setup.relay_user.access_token is not None
        assert setup.relay_user.user_id is not None
        observer = Observer(
            mod.client_url,
            pair.bob.access_token,
            {pair.room_b: only(pair.bot), setup.room_b2: only(setup.relay_user.user_id)},
        )
        observer.prime()
        observer.start()
        relay = RelayBot(
            RelaySpec(
                mod.client_url,
                setup.relay_user.access_token,
                setup.relay_user.user_id,
                setup.room_a2,
                setup.room_b2,
                SHORT_RELAY_POLL_MS if args.short else RELAY_POLL_MS,
            )
        )
        relay.start()

        latency = run_latency(setup, observer, relay, args.messages, rate, args.warmup)
        progress(
            f"(a)/(b) done: p50 {fmt(latency.module.p50_ms)} vs {fmt(latency.relay.p50_ms)} ms"
        )

        backlog = run_backlog(
            mod,
            observer,
            pair.alice.access_token,
            pair.room_a,
            "d",
            args.backlog_rate,
            args.backlog_seconds,
            sample_depth=True,
        )
        progress(f"(d) module done: {backlog.sent} sent, drain {fmt(backlog.drain_s, 2)} s")
        relay_backlog = run_backlog(
            mod,
            observer,
            pair.alice.access_token,
            setup.room_a2,
            "e",
            args.backlog_rate,
            args.backlog_seconds,
            sample_depth=False,
        )
        progress(
            f"(d) relay done: {relay_backlog.sent} sent, drain {fmt(relay_backlog.drain_s, 2)} s"
        )
        relay_counts = relay.stop()
        relay = None
        if relay_counts.get("error"):
            raise BenchError(f"relay bot failed: {relay_counts['error']}")
        observer.check()
        # Over the whole run: a gap in the observer's timeline would lose arrivals.
        latency.observer_limited_syncs = observer.limited_syncs
        counts = Counts.of(latency, throughput, backlog, pointer_tally(pair))
        observer.stop()
        observer = None
        ghosts = run_ghost_phase(args, mod, progress)
        results = Results(
            rate, latency, throughput, backlog, relay_backlog, relay_counts, counts, ghosts
        )
        for line in report(args, results, started):
            out(line)
        write_json(args, {**asdict(results), "ghosts": ghost_payload(ghosts)})
        return 0
    finally:
        if relay is not None:
            relay.stop()
        if observer is not None:
            observer.stop()
        destroy_all(servers)
        bench_servers.remove_run_dir(base_dir, keep=args.keep, print_line=out)


def run_ghost_phase(
    args: argparse.Namespace, mod: Homeserver, progress: Callable[[str], None]
) -> GhostResult:
    # Imported here: bench.ferry_ghosts builds on this module's observer.
    from bench.ferry_ghosts import run_ghosts

    progress("(g) ghosts vs bot: setting up two pairs and the new authors")
    ghosts = run_ghosts(mod, args.ghost_messages, args.new_authors, args.warmup)
    progress(
        f"(g) done: steady p50 {fmt(LatencyStats.of(ghosts.steady_ghosts).p50_ms)} vs "
        f"{fmt(LatencyStats.of(ghosts.steady_bot).p50_ms)} ms"
    )
    return ghosts


def ferry_ghosts_report(ghosts: GhostResult) -> Iterator[str]:
    from bench.ferry_ghosts import report as ghosts_report

    yield ""
    yield from ghosts_report(ghosts)


def ghost_payload(ghosts: GhostResult) -> JsonDict:
    """The phase's samples, counts and each path's statistics."""
    stats = {
        name: asdict(LatencyStats.of(getattr(ghosts, name)))
        for name in ("steady_ghosts", "steady_bot", "new_authors", "new_baseline")
    }
    return {**asdict(ghosts), "stats": stats}


def write_json(args: argparse.Namespace, results: JsonDict) -> None:
    if args.json is not None:
        payload = {"args": {k: str(v) for k, v in vars(args).items()}, **results}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return bench_servers.run_script(lambda: run(args, lambda line: print(line, flush=True)))


if __name__ == "__main__":
    sys.exit(main())
