"""Scale benchmark, part (7): what each ghost costs the server, at N authors.

One connected pair whose receiving room takes the default senders (ghosts).
N people join the source room (and are registered) before anything is
counted, so their own accounts are not charged to their ghosts. Then, with
the database rows of every table and the Synapse process's VmRSS read after
the module has gone quiet:

- control: N messages by one author whose ghost already exists, each with
  its counterpart: what the messages themselves cost;
- ghosts: one message by each of the N new authors: the same messages, plus
  a ghost per author, registered, invited and joined to the receiving room.

Per ghost = (ghosts - control) / N, per table and in all; the module's own
table ``room_connect_ghosts`` should grow by exactly one row per ghost.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from bench.ferry import Http, run_threads, text
from bench.scale import rss_kib, settle
from bench.scale_rooms import SyncReader, pointer_key
from bench.servers import BenchError
from harness.client import MatrixClient
from harness.connect_api import connect, unique, wait_for_notice
from harness.synapse import Homeserver
from harness.user_directory import wait_for_user_directory

GHOSTS_TABLE: Final = "room_connect_ghosts"
# Synapse updates its user directory (users_who_share_private_rooms) in the
# background, long after the module is quiet when a burst of joins lands in
# a large room: the rows are counted only once it has caught up, or after
# this long, said in the report.
DIRECTORY_MAX_S: Final = 3600.0
# Shown on their own line whatever they grew by: a person's account, and the
# module's record of its ghosts.
NAMED_TABLES: Final = (
    "users",
    "profiles",
    "devices",
    "access_tokens",
    "room_memberships",
    "local_current_membership",
    "current_state_events",
    "events",
    "state_groups_state",
    GHOSTS_TABLE,
)


@dataclass
class Step:
    """One burst of N messages: rows added per table, VmRSS growth, how long
    until every counterpart was in the reader's /sync."""

    messages: int
    rows: dict[str, int] = field(default_factory=dict)
    rss_kib: int = 0
    land_s: float = 0.0
    missing: int = 0
    # After the module was quiet: how long until Synapse's user directory
    # had caught up, and how many stream positions it was still behind when
    # the rows were counted (0: caught up).
    directory_s: float = 0.0
    directory_behind: int = 0


@dataclass
class GhostCost:
    authors: int
    control: Step
    ghosts: Step

    def rows_per_ghost(self) -> dict[str, float]:
        tables = set(self.control.rows) | set(self.ghosts.rows)
        per = {
            t: (self.ghosts.rows.get(t, 0) - self.control.rows.get(t, 0)) / self.authors
            for t in tables
        }
        return {t: v for t, v in per.items() if v}

    @property
    def rss_kib_per_ghost(self) -> float:
        return (self.ghosts.rss_kib - self.control.rss_kib) / self.authors


def table_rows(hs: Homeserver) -> dict[str, int]:
    """Rows in every table of the homeserver's SQLite database."""
    database = sqlite3.connect(f"file:{hs.directory / 'homeserver.db'}?mode=ro", uri=True)
    try:
        names = [
            str(row[0])
            for row in database.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        # Table names come from the database itself, not from input.
        return {
            n: int(database.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n in names
        }
    finally:
        database.close()


def _in_parallel(items: Sequence[MatrixClient], threads: int, each: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def share(offset: int) -> None:
        try:
            for i in range(offset, len(items), threads):
                each(i)
        except BaseException as exc:
            errors.append(exc)

    run_threads(
        [threading.Thread(target=share, args=(t,)) for t in range(threads)], errors, "authors"
    )


def _burst(
    hs: Homeserver,
    reader: SyncReader,
    senders: Sequence[MatrixClient],
    room_a: str,
    threads: int,
    label: str,
) -> Step:
    """One message per entry of ``senders`` (a client may repeat), then the
    counts once every counterpart is in /sync and the module is quiet."""
    settle(hs)
    wait_for_user_directory(hs, DIRECTORY_MAX_S)
    rows_before, rss_before = table_rows(hs), rss_kib(hs.process.pid)
    event_ids = [""] * len(senders)
    started = time.monotonic()

    def send(i: int) -> None:
        http_ = Http(hs.client_url, senders[i].access_token)
        try:
            event_ids[i], _ = http_.send(room_a, text(f"{label} {i}"))
        finally:
            http_.close()

    _in_parallel(senders, threads, send)
    missing = reader.wait_for(event_ids, 120 + 2.0 * len(senders))
    landed = [reader.sightings(e)[0][0] for e in event_ids if reader.sightings(e)]
    settle(hs)
    directory_s, directory_behind = wait_for_user_directory(hs, DIRECTORY_MAX_S)
    rows_after = table_rows(hs)
    return Step(
        messages=len(senders),
        directory_s=directory_s,
        directory_behind=directory_behind,
        rows={
            t: n - rows_before.get(t, 0) for t, n in rows_after.items() if n != rows_before.get(t)
        },
        rss_kib=rss_kib(hs.process.pid) - rss_before,
        land_s=(max(landed) - started) if landed else float("nan"),
        missing=len(missing),
    )


def run_ghost_cost(
    hs: Homeserver, authors: int, threads: int, progress: Callable[[str], None]
) -> GhostCost:
    bot: str = hs.info()["bot_user_id"]
    alice = hs.register(unique("gc-alice"), displayname="Alice")
    bob = hs.register(unique("gc-bob"), displayname="Bob")
    alice.request_timeout = 300
    room_a = alice.create_room(name=unique("A-authors"))
    room_b = bob.create_room(name=unique("B-ghosts"))
    connect(alice, room_a, room_b)
    if connect(bob, room_b, room_a).get("status") != "active":
        raise BenchError("(7) the connection is not active after both consents")
    wait_for_notice(bob, room_b, bot, "now connected", timeout=60)
    people: list[MatrixClient] = [alice] * authors

    def join(i: int) -> None:
        person = hs.register(unique("gc-author"), displayname=f"Author {i}")
        assert person.user_id is not None
        alice.invite(room_a, person.user_id)
        person.join(room_a)
        people[i] = person

    _in_parallel(people, threads, join)
    progress(f"(7) {authors} authors registered and joined to the source room")
    # Bob reads every counterpart, whoever sends it.
    reader = SyncReader(hs.client_url, bob, None, key_of=pointer_key)
    reader.prime()
    reader.start()
    try:
        warm = _burst(hs, reader, [alice], room_a, 1, "ghost warm-up")
        if warm.missing:
            raise BenchError("(7) Alice's first counterpart never landed")
        control = _burst(hs, reader, [alice] * authors, room_a, threads, "ghost control")
        progress(f"(7) control: {authors} messages by one author in {control.land_s:.1f} s")
        ghosts = _burst(hs, reader, people, room_a, threads, "ghost first")
        progress(f"(7) {authors} new authors' first messages in {ghosts.land_s:.1f} s")
    finally:
        reader.stop()
    if control.missing or ghosts.missing:
        raise BenchError(
            f"(7) counterparts never landed: {control.missing} of the control, "
            f"{ghosts.missing} of the new authors'"
        )
    return GhostCost(authors, control, ghosts)


def report(cost: GhostCost) -> Iterator[str]:
    n = cost.authors
    per = cost.rows_per_ghost()
    yield (
        f"(7) ghosts at {n} authors: {n} first messages (a ghost each) in "
        f"{cost.ghosts.land_s:.1f} s, against {n} messages by one author in "
        f"{cost.control.land_s:.1f} s"
    )
    for name, step in (("control", cost.control), ("new authors", cost.ghosts)):
        caught_up = (
            f"caught up {step.directory_s:.1f} s after the module was quiet"
            if not step.directory_behind
            else f"still {step.directory_behind} stream positions behind after "
            f"{step.directory_s:.0f} s: its rows are undercounted"
        )
        yield f"  Synapse's user directory, {name}: {caught_up}"
    yield "  database rows per ghost, beyond the same messages by an author with a ghost:"
    yield "    " + ", ".join(f"{t} {per.get(t, 0.0):.2f}" for t in NAMED_TABLES)
    others = sorted(
        ((t, v) for t, v in per.items() if t not in NAMED_TABLES and abs(v) >= 0.01),
        key=lambda kv: -abs(kv[1]),
    )
    if others:
        yield "    other tables: " + ", ".join(f"{t} {v:.2f}" for t, v in others)
    yield (
        f"  VmRSS growth: {cost.ghosts.rss_kib / 1024:.1f} MiB for the new authors, "
        f"{cost.control.rss_kib / 1024:.1f} MiB for the control"
    )
    yield (
        f"COUNT rows per ghost: {sum(per.values()):.1f} in all; "
        f"{GHOSTS_TABLE} {per.get(GHOSTS_TABLE, 0.0):.2f}"
    )
    yield f"COUNT memory per ghost: {cost.rss_kib_per_ghost:.1f} KiB VmRSS"
