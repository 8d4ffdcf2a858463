"""Expansion benchmark: what the module's unsigned callback costs clients.

Synapse calls the module's ``add_extra_fields_to_unsigned_client_event``
callback for every event it serves. For events that are not pointers it
returns ``{}`` after one type/content check; for pointers it adds
``unsigned["org.matrix.msc2923.original"]``. One run starts two real Synapse
processes through the test harness, one with the module and one without it,
and times three requests that each serve a page of 100 events (10 with
``--short``; 100 below stands for the page size):

- ``GET /rooms/{roomId}/messages?dir=b&limit=100``;
- an initial ``/sync`` (no ``since``) filtered to the room, timeline limit 100;
- an incremental ``/sync`` from a token taken just before the 100 events.

against four pages:

- ``plain/off``: 100 plain ``m.text`` messages on the server without the module;
- ``plain/on``: the same 100 messages on the server with the module;
- ``pointers/on``: 100 pointers the ferry sent into a connected room, whose
  originals are 100 messages with the same bodies;
- ``pointers/off``: the same 100 pointer contents sent by a user on the server
  without the module, where nothing expands them.

It reports medians and three ratios: plain/on over plain/off (the cost of the
callback on everything that is not a pointer), pointers/on over pointers/off
(the cost of expanding, with the content the same) and pointers/on over
plain/on (the cost of a pointer to its reader, its larger content included).
Each round measures the four pages one after another, in an order that
rotates from round to round, so they share the same machine noise and each
server serves as many requests as the other; the bracket next to a ratio is
the interquartile range of the per-round ratios.

Times come from two places: the client's round trip over a persistent
loopback connection (the headline figures and the RATIO lines), and Synapse's
own access log line for the same request ("Processed request": wall time from
receiving the request to sending the last byte, CPU time and database
transactions), matched through a ``bench=`` query parameter Synapse ignores.
Last, the callback alone is timed in this process on events that are not
pointers: the floor under the plain-page difference.

Run from the repository root with the project's virtualenv::

    .venv/bin/python bench/expansion.py            # full run, a few minutes
    .venv/bin/python bench/expansion.py --short    # CI run, well under 30 s

Besides times, it reports the database transactions per request (COUNT
lines, also in ``--json``): counts, unlike times, do not depend on the
machine, so tests/test_bench_expansion.py asserts them.

Exits 1 on errors (a server that does not start, a page that is not what it
should be, a request that fails); ratios never fail the run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    # Run as a script (bench/expansion.py): the harness lives in the repository root.
    sys.path.insert(0, str(ROOT))

from synapse.api.room_versions import RoomVersions  # noqa: E402
from synapse.events import EventBase, make_event_from_dict  # noqa: E402

from bench import servers as bench_servers  # noqa: E402
from bench.servers import CLIENT_V3, BenchError, create_pair, destroy_all, q  # noqa: E402
from harness.client import JsonDict, MatrixClient  # noqa: E402
from harness.connect_api import unique  # noqa: E402
from harness.ferry_helpers import POINTER, connected_pair, wait_for_pointer  # noqa: E402
from harness.process import remove_dir  # noqa: E402
from harness.synapse import Homeserver, start_together  # noqa: E402
from synapse_room_connect.expansion.expander import Expander  # noqa: E402

ORIGINAL: Final = "org.matrix.msc2923.original"
PAGE: Final = 100
SHORT_PAGE: Final = 10
# Same text in every page, so plain and pointer pages differ only by what the
# ferry and the expansion add.
BODY: Final = "message {index:03d}: the quick brown fox jumps over the lazy dog"

PLAIN_OFF: Final = "plain/off"
PLAIN_ON: Final = "plain/on"
POINTERS_OFF: Final = "pointers/off"
POINTERS_ON: Final = "pointers/on"
TARGETS: Final = (PLAIN_OFF, PLAIN_ON, POINTERS_OFF, POINTERS_ON)
# (label, numerator, denominator) of the ratios reported.
RATIOS: Final = (
    ("on/off plain", PLAIN_ON, PLAIN_OFF),
    ("on/off pointers", POINTERS_ON, POINTERS_OFF),
    ("pointers/plain on", POINTERS_ON, PLAIN_ON),
)

# Each serves one page: /messages and an initial /sync with the page size as
# their limit, an incremental /sync from just before the page.
MESSAGES: Final = "/messages"
INITIAL_SYNC: Final = "/sync initial"
INCREMENTAL_SYNC: Final = "/sync incremental"
ENDPOINTS: Final = (MESSAGES, INITIAL_SYNC, INCREMENTAL_SYNC)

# Synapse 1.163's access log line (synapse/http/site.py, _finished_processing).
ACCESS_LOG_RE: Final = re.compile(
    r"Processed request: (?P<processing>-?[\d.]+)sec/(?P<sending>-?[\d.]+)sec"
    r" ru=\((?P<utime>[\d.]+)sec, (?P<stime>[\d.]+)sec\)"
    r" db=\((?P<db_sched>[\d.]+)sec/(?P<db_txn>[\d.]+)sec/(?P<txns>\d+)\)"
    r' \S+ \S+ "GET \S*[?&]bench=(?P<tag>\w+)'
)


class Connection:
    """One persistent HTTP/1.1 connection with one user's token.

    The harness's ``MatrixClient`` opens a connection per request: fine for
    setting up, but a TCP handshake per measured request would be noise of the
    same size as the differences measured here.
    """

    def __init__(self, base_url: str, access_token: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"need a host and a port in {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port
        self._headers = {"Accept": "application/json", "Authorization": f"Bearer {access_token}"}
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get(self, path: str) -> tuple[JsonDict, float]:
        """The decoded body and the round trip in seconds (request sent to body read).

        A keep-alive connection the server dropped is reopened once, untimed:
        every request here is a GET.
        """
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
                self._conn.connect()
            try:
                started = time.perf_counter()
                self._conn.request("GET", path, headers=self._headers)
                response = self._conn.getresponse()
                raw = response.read()
                elapsed = time.perf_counter() - started
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise BenchError(f"GET {path}: HTTP {response.status}: {raw[:300]!r}")
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise BenchError(f"GET {path}: expected a JSON object, got {raw[:100]!r}")
            return body, elapsed
        raise AssertionError("unreachable")


def sync_filter(room_id: str, size: int) -> str:
    """One room, its last ``size`` timeline events, and nothing that changes between
    requests (presence, receipts, account data), so every response is the same."""
    body = bench_servers.quiet_sync_filter({"rooms": [room_id], "timeline": {"limit": size}})
    return json.dumps(body, separators=(",", ":"))


@dataclass
class Page:
    """A room page as one reader sees it, and how to request it."""

    name: str
    connection: Connection
    room_id: str
    since: str
    size: int
    # What every event of the page must be: pointer-shaped content, and an
    # expansion in unsigned.
    pointers: bool = False
    expanded: bool = False

    def path(self, endpoint: str, tag: str) -> str:
        room_filter = sync_filter(self.room_id, self.size)
        if endpoint == MESSAGES:
            query = {"dir": "b", "limit": str(self.size), "bench": tag}
            return f"{CLIENT_V3}/rooms/{q(self.room_id)}/messages?{urllib.parse.urlencode(query)}"
        query = {"timeout": "0", "filter": room_filter, "bench": tag}
        if endpoint == INCREMENTAL_SYNC:
            query["since"] = self.since
        return f"{CLIENT_V3}/sync?{urllib.parse.urlencode(query)}"

    def check(self, endpoint: str, body: JsonDict) -> None:
        """Fail the run unless the response holds exactly the page measured."""
        if endpoint == MESSAGES:
            events: list[JsonDict] = body.get("chunk", [])
        else:
            room = body.get("rooms", {}).get("join", {}).get(self.room_id, {})
            events = room.get("timeline", {}).get("events", [])
        messages = [e for e in events if e.get("type") == "m.room.message"]
        if len(events) != self.size or len(messages) != self.size:
            raise BenchError(
                f"{self.name} {endpoint}: {len(events)} events, {len(messages)} messages;"
                f" expected {self.size} messages"
            )
        for event in messages:
            is_pointer = POINTER in event.get("content", {})
            has_original = ORIGINAL in event.get("unsigned", {})
            if is_pointer != self.pointers or has_original != self.expanded:
                raise BenchError(
                    f"{self.name} {endpoint}: {event.get('event_id')} pointer={is_pointer}"
                    f" expanded={has_original}; expected pointer={self.pointers}"
                    f" expanded={self.expanded}"
                )


@dataclass
class Sample:
    round: int
    endpoint: str
    target: str
    tag: str
    client_s: float
    server_s: float | None = None
    cpu_s: float | None = None
    db_s: float | None = None
    db_txns: int | None = None


@dataclass
class Results:
    rounds: int
    warmup: int
    page_size: int
    samples: list[Sample] = field(default_factory=list)
    # Other processes on the machine are the main source of noise: say how busy it was.
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()

    def measured(self) -> list[Sample]:
        return [s for s in self.samples if s.round >= self.warmup]


# -- setting up -----------------------------------------------------------------------


def send_page(client: MatrixClient, room_id: str, size: int) -> list[str]:
    return [client.send_message(room_id, BODY.format(index=i)) for i in range(size)]


def since_token(client: MatrixClient, room_id: str) -> str:
    """A sync token from now: an incremental /sync from it returns what comes next."""
    # The filter's limit does not change the token.
    query = {"timeout": "0", "filter": sync_filter(room_id, 1)}
    token: str = client.request("GET", f"{CLIENT_V3}/sync", query=query)["next_batch"]
    return token


def plain_page(hs: Homeserver, name: str, size: int) -> Page:
    carol = hs.register(unique("carol"), displayname="Carol")
    room_id = carol.create_room(name=unique("plain"))
    since = since_token(carol, room_id)
    send_page(carol, room_id, size)
    assert carol.access_token is not None
    return Page(name, Connection(hs.client_url, carol.access_token), room_id, since, size)


@dataclass(frozen=True)
class EmptyRoom:
    client: MatrixClient
    room_id: str
    since: str


def empty_room(hs: Homeserver, name: str) -> EmptyRoom:
    dave = hs.register(unique("dave"), displayname="Dave")
    room_id = dave.create_room(name=unique(name))
    return EmptyRoom(dave, room_id, since_token(dave, room_id))


def pointer_pages(
    on: Homeserver, off: Homeserver, size: int, shaped_room: Future[EmptyRoom]
) -> tuple[Page, Page]:
    """``size`` pointers the ferry sent on ``on``, and the same contents sent by a
    user on ``off`` into ``shaped_room``, where nothing expands them: the pair
    isolates what the expansion costs from what the pointers' larger content
    costs."""
    # The bot sends the pointers, as in every recorded run: this measures the
    # expansion, not who sent what it expands.
    pair = connected_pair(on, senders="bot")
    since = since_token(pair.bob, pair.room_b)
    originals = send_page(pair.alice, pair.room_a, size)
    # Pointers go out in order, so the last one arriving means all have.
    wait_for_pointer(pair.bob, pair.room_b, originals[-1], timeout=120)
    assert pair.bob.access_token is not None
    connection = Connection(on.client_url, pair.bob.access_token)
    expanded = Page(POINTERS_ON, connection, pair.room_b, since, size, pointers=True, expanded=True)

    chunk = pair.bob.messages(pair.room_b, dir="b", limit=size)["chunk"]
    contents = [e["content"] for e in reversed(chunk) if POINTER in e.get("content", {})]
    if len(contents) != size:
        raise BenchError(f"expected {size} pointers in {pair.room_b}, found {len(contents)}")
    room = shaped_room.result()
    for content in contents:
        room.client.send_event(room.room_id, "m.room.message", content)
    assert room.client.access_token is not None
    dave_connection = Connection(off.client_url, room.client.access_token)
    shaped = Page(POINTERS_OFF, dave_connection, room.room_id, room.since, size, pointers=True)
    return expanded, shaped


# -- measuring ------------------------------------------------------------------------


def round_order(index: int) -> Sequence[str]:
    """The targets' order in round ``index``: each takes every position equally
    often, forwards and backwards, so none is favoured by following another;
    TARGETS alternates the servers, so consecutive requests always do too."""
    shift = index % len(TARGETS)
    order = TARGETS[shift:] + TARGETS[:shift]
    return order[::-1] if (index // len(TARGETS)) % 2 else order


def measure(pages: dict[str, Page], rounds: int, warmup: int, size: int, progress: bool) -> Results:
    results = Results(rounds=rounds, warmup=warmup, page_size=size, load_before=os.getloadavg())
    counter = 0
    total = warmup + rounds
    for index in range(total):
        for endpoint in ENDPOINTS:
            for target in round_order(index):
                page = pages[target]
                counter += 1
                tag = f"b{counter}"
                body, elapsed = page.connection.get(page.path(endpoint, tag))
                page.check(endpoint, body)
                results.samples.append(Sample(index, endpoint, target, tag, elapsed))
        if progress and (index + 1) % 10 == 0:
            print(f"  round {index + 1}/{total}", file=sys.stderr, flush=True)
    results.load_after = os.getloadavg()
    return results


def attach_access_log(results: Results, servers: Sequence[Homeserver]) -> None:
    """Fill in each sample's server-side figures from the Synapse access logs."""
    wanted = {s.tag: s for s in results.samples}
    deadline = time.monotonic() + 10
    found: dict[str, re.Match[str]] = {}
    while True:
        for hs in servers:
            for match in ACCESS_LOG_RE.finditer(hs.log_text()):
                found[match["tag"]] = match
        missing = wanted.keys() - found.keys()
        # The log line is written once the response has gone out, which can be a
        # moment after the client has read it.
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if missing:
        raise BenchError(f"{len(missing)} requests missing from the access logs, e.g. {missing}")
    for tag, sample in wanted.items():
        match = found[tag]
        sample.server_s = float(match["processing"]) + float(match["sending"])
        sample.cpu_s = float(match["utime"]) + float(match["stime"])
        sample.db_s = float(match["db_sched"]) + float(match["db_txn"])
        sample.db_txns = int(match["txns"])


# -- the callback alone -------------------------------------------------------------


def _event(event_type: str, content: JsonDict, state_key: str | None = None) -> EventBase:
    fields: JsonDict = {
        "type": event_type,
        "room_id": "!bench:example.org",
        "sender": "@carol:example.org",
        "content": content,
        "origin_server_ts": 0,
        "auth_events": [],
        "prev_events": [],
        "depth": 1,
        "hashes": {"sha256": "unused"},
        "signatures": {},
    }
    if state_key is not None:
        fields["state_key"] = state_key
    return make_event_from_dict(fields, RoomVersions.V10)


def callback_cost(calls: int) -> dict[str, float]:
    """Seconds per ``Expander.unsigned_for`` call on events that are not
    pointers, in this process: the floor under what the servers show.

    The coroutine is stepped by hand: on this path it must finish without
    awaiting anything, and a step that suspends is reported as an error.
    """
    # The fast path never touches the module API or the store.
    expander = Expander(None, None)  # type: ignore[arg-type]
    events = {
        "m.room.message": _event("m.room.message", {"msgtype": "m.text", "body": "hello"}),
        "m.room.member": _event("m.room.member", {"membership": "join"}, "@carol:example.org"),
    }
    costs: dict[str, float] = {}
    for name, event in events.items():
        best = float("inf")
        # The fastest of a few batches, as timeit does: slower ones measured
        # other processes, not the callback.
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                step = expander.unsigned_for(event)
                try:
                    step.send(None)
                except StopIteration as done:
                    if done.value != {}:
                        raise BenchError(f"{name}: unsigned_for returned {done.value!r}") from None
                else:
                    step.close()
                    raise BenchError(f"{name}: unsigned_for awaited something")
            best = min(best, (time.perf_counter() - started) / calls)
        costs[name] = best
    return costs


def callback_lines(costs: dict[str, float], size: int) -> list[str]:
    per_call = ", ".join(f"{name} {seconds * 1e6:.2f} us" for name, seconds in costs.items())
    page_ms = max(costs.values()) * size * 1e3
    return [
        "the callback alone, in this process, on events that are not pointers",
        f"  per call: {per_call}; for a page of {size} events: {page_ms:.2f} ms",
    ]


# -- reporting ------------------------------------------------------------------------


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    low, mid, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, mid, high


def by_round(
    samples: Sequence[Sample], endpoint: str, value: Callable[[Sample], float | None]
) -> dict[int, dict[str, float]]:
    table: dict[int, dict[str, float]] = {}
    for s in samples:
        v = value(s)
        if s.endpoint == endpoint and v is not None:
            table.setdefault(s.round, {})[s.target] = v
    return table


@dataclass
class Ratio:
    of_medians: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.of_medians:.2f} [{self.low:.2f}-{self.high:.2f}]"


def ratio(rows: dict[int, dict[str, float]], top: str, bottom: str) -> Ratio:
    """Ratio of the medians, with the interquartile range of per-round ratios:
    each round measured both pages within a second of each other."""
    tops = [r[top] for r in rows.values()]
    bottoms = [r[bottom] for r in rows.values()]
    paired = [r[top] / r[bottom] for r in rows.values() if r[bottom] > 0]
    median_bottom = statistics.median(bottoms)
    of_medians = statistics.median(tops) / median_bottom if median_bottom > 0 else float("nan")
    if not paired:
        return Ratio(of_medians, float("nan"), float("nan"))
    low, _, high = quartiles(paired)
    return Ratio(of_medians, low, high)


def table(
    title: str,
    samples: Sequence[Sample],
    value: Callable[[Sample], float | None],
    unit: float,
    *,
    ratios: bool = True,
    fastest: bool = False,
) -> list[str]:
    """Medians per endpoint and page (or, with ``fastest``, minimums, which
    other load on the machine can only ever raise), with the two ratios."""
    header = f"{'':<24}" + "".join(f"{t:>13}" for t in TARGETS)
    if ratios:
        header += "".join(f"{label:>20}" for label, _, _ in RATIOS)
    lines = [title, header]
    pick: Callable[[Sequence[float]], float] = min if fastest else statistics.median
    for endpoint in ENDPOINTS:
        rows = by_round(samples, endpoint, value)
        cells = {t: pick([r[t] for r in rows.values()]) for t in TARGETS}
        digits = 1 if unit < 1 else 0
        line = f"{endpoint:<24}" + "".join(f"{cells[t] / unit:>13.{digits}f}" for t in TARGETS)
        for _, top, bottom in RATIOS if ratios else ():
            if fastest:
                line += f"{cells[top] / cells[bottom] if cells[bottom] else float('nan'):>20.2f}"
            else:
                line += f"{ratio(rows, top, bottom)!s:>20}"
        lines.append(line)
    return lines


def ratio_lines(samples: Sequence[Sample]) -> list[str]:
    """Machine-readable summary of the headline (client round trip) ratios."""

    def joined(top: str, bottom: str) -> str:
        parts = []
        for endpoint in ENDPOINTS:
            rows = by_round(samples, endpoint, lambda s: s.client_s)
            parts.append(f"{endpoint} {ratio(rows, top, bottom).of_medians:.2f}")
        return "; ".join(parts)

    return [
        f"RATIO module on/off, plain page: {joined(PLAIN_ON, PLAIN_OFF)}",
        f"RATIO module on/off, pointer page: {joined(POINTERS_ON, POINTERS_OFF)}",
        f"RATIO pointers/plain, module on: {joined(POINTERS_ON, PLAIN_ON)}",
    ]


@dataclass(frozen=True)
class TxnCount:
    """Database transactions of one request over the measured rounds."""

    median: float
    max: int


def db_txn_counts(samples: Sequence[Sample]) -> dict[str, dict[str, TxnCount]]:
    """Per endpoint and page, from the access logs. Unlike times, these do not
    depend on the machine: the callback is free for a plain page only if the
    module adds no transaction to it, and a pointer page's expansion must cost
    a bounded number, not one per pointer."""
    counts: dict[str, dict[str, TxnCount]] = {}
    for endpoint in ENDPOINTS:
        for target in TARGETS:
            found = [
                s.db_txns
                for s in samples
                if s.endpoint == endpoint and s.target == target and s.db_txns is not None
            ]
            if found:
                counts.setdefault(endpoint, {})[target] = TxnCount(
                    statistics.median(found), max(found)
                )
    return counts


def count_lines(counts: dict[str, dict[str, TxnCount]]) -> list[str]:
    """Machine-readable: database transactions per request, module on/off (median)."""

    def joined(on: str, off: str) -> str:
        return "; ".join(
            f"{endpoint} {row[on].median:g}/{row[off].median:g}" for endpoint, row in counts.items()
        )

    return [
        f"COUNT db txns per request on/off, plain page: {joined(PLAIN_ON, PLAIN_OFF)}",
        f"COUNT db txns per request on/off, pointer page: {joined(POINTERS_ON, POINTERS_OFF)}",
    ]


def synapse_version() -> str:
    try:
        import synapse

        return str(synapse.__version__)
    except ImportError:
        return "?"


def report(results: Results, costs: dict[str, float]) -> str:
    samples = results.measured()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    loads = ", ".join(f"{a:.1f}" for a in results.load_before + results.load_after)
    lines = [
        f"Expansion benchmark, {now}: {platform.system()} {platform.machine()},"
        f" {os.cpu_count()} cores, Python {platform.python_version()},"
        f" Synapse {synapse_version()}",
        f"load average (1, 5, 15 min) before and after measuring: {loads}",
        f"pages of {results.page_size} events; {results.rounds} interleaved rounds measured"
        f" after {results.warmup} warm-up rounds; medians, ratios as"
        " ratio-of-medians [interquartile range of per-round ratios]",
        "",
    ]
    sections: list[list[str]] = [
        table(
            "client round trip, ms (loopback, persistent connection)",
            samples,
            lambda s: s.client_s,
            1e-3,
        ),
        table(
            "client round trip, ms, fastest round (least disturbed by other load)",
            samples,
            lambda s: s.client_s,
            1e-3,
            fastest=True,
        ),
        table(
            "server time, ms (Synapse access log: request received to response sent; 1 ms steps)",
            samples,
            lambda s: s.server_s,
            1e-3,
        ),
        table(
            "server CPU, ms (Synapse access log: main thread user + system; 1 ms steps)",
            samples,
            lambda s: s.cpu_s,
            1e-3,
        ),
        table(
            "database transactions per request (Synapse access log)",
            samples,
            lambda s: None if s.db_txns is None else float(s.db_txns),
            1.0,
            ratios=False,
        ),
        callback_lines(costs, results.page_size),
        ratio_lines(samples),
        count_lines(db_txn_counts(samples)),
    ]
    for section in sections:
        lines += [*section, ""]
    return "\n".join(lines).rstrip()


# -- running --------------------------------------------------------------------------


def run(rounds: int, warmup: int, size: int, progress: bool, raw_path: Path | None) -> str:
    base = Path(tempfile.mkdtemp(prefix="room-connect-bench-expansion-"))
    servers: list[Homeserver] = []
    pages: dict[str, Page] = {}
    try:
        # The response cache would answer a repeated initial /sync without
        # computing it again; real clients rarely repeat one within minutes.
        no_cache = {"caches": {"sync_response_cache_duration": 0}}
        on, off = create_pair(
            base, servers, names=("bench-on", "bench-off"), config_overrides=no_cache
        )
        started = time.monotonic()
        start_together(servers)
        log(progress, f"servers up in {time.monotonic() - started:.1f}s; sending pages")
        # Side by side: each send waits on the server's database, so the two
        # servers, and two rooms of one server, overlap well on two cores.
        with ThreadPoolExecutor(max_workers=len(TARGETS) + 1) as pool:
            futures = {
                PLAIN_OFF: pool.submit(plain_page, off, PLAIN_OFF, size),
                PLAIN_ON: pool.submit(plain_page, on, PLAIN_ON, size),
            }
            shaped_room = pool.submit(empty_room, off, "pointer-shaped")
            both = pool.submit(pointer_pages, on, off, size, shaped_room)
            for name, future in futures.items():
                pages[name] = future.result()
            pages[POINTERS_ON], pages[POINTERS_OFF] = both.result()
        log(progress, f"pages ready after {time.monotonic() - started:.1f}s; measuring")
        results = measure(pages, rounds, warmup, size, progress)
        attach_access_log(results, servers)
        if raw_path is not None:
            counts = db_txn_counts(results.measured())
            raw = {
                "rounds": rounds,
                "warmup": warmup,
                "page_size": size,
                "db_txns": {
                    endpoint: {target: asdict(count) for target, count in row.items()}
                    for endpoint, row in counts.items()
                },
                "samples": [asdict(s) for s in results.samples],
            }
            raw_path.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
        costs = callback_cost(calls=2_000 if size < PAGE else 20_000)
        log(progress, f"done after {time.monotonic() - started:.1f}s")
        return report(results, costs)
    finally:
        for page in pages.values():
            page.connection.close()
        destroy_all(servers)
        remove_dir(base)


def log(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--short", action="store_true", help="CI run: pages of 10 events, few rounds"
    )
    parser.add_argument("--rounds", type=int, help="measured rounds (default 200, --short 5)")
    parser.add_argument("--warmup", type=int, help="discarded rounds (default 10, --short 1)")
    parser.add_argument(
        "--page-size", type=int, help=f"events per page (default {PAGE}, --short {SHORT_PAGE})"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every sample here")
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.short else 200)
    warmup = args.warmup if args.warmup is not None else (1 if args.short else 10)
    size = args.page_size or (SHORT_PAGE if args.short else PAGE)
    if rounds < 1 or warmup < 0 or size < 1:
        parser.error("--rounds and --page-size must be at least 1 and --warmup at least 0")

    def body() -> int:
        print(run(rounds, warmup, size, progress=not args.quiet, raw_path=args.json), flush=True)
        return 0

    return bench_servers.run_script(body, failure="expansion benchmark failed")


if __name__ == "__main__":
    sys.exit(main())
