"""What setting up connections costs Synapse: the events it persisted, split
into the users' part (rooms and consents) and the bot's activation (its
invites, joins and notices), read from the homeserver's SQLite database.

Used by ``bench/scale.py`` on its single-process server; a read-only
connection, so it never holds up Synapse's writes (its database runs in WAL
mode).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SetUpEvents:
    """Events persisted while connections were set up, by who caused them."""

    connections: int = 0
    # The bot's activation: what reconciliation made the bot do.
    bot_joins: int = 0
    bot_invites: int = 0  # a consenting admin inviting the bot into a private room
    bot_notices: int = 0
    bot_other: int = 0
    # The users' own set-up: createRoom's events and the two consents.
    users: int = 0
    users_by_type: dict[str, int] = field(default_factory=dict)
    # CPU seconds of the Synapse process, and of the module's background
    # processes among them (reconciliation, accepting invites) by name.
    synapse_cpu_s: float = 0.0
    module_cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def activation(self) -> int:
        return self.bot_joins + self.bot_invites + self.bot_notices + self.bot_other

    @property
    def total(self) -> int:
        return self.activation + self.users

    def per_connection(self, count: int) -> float:
        return count / self.connections if self.connections else float("nan")

    def plus(self, other: SetUpEvents) -> SetUpEvents:
        users_by_type = Counter(self.users_by_type)
        users_by_type.update(other.users_by_type)
        module_cpu_s = dict(self.module_cpu_s)
        for name, cpu in other.module_cpu_s.items():
            module_cpu_s[name] = module_cpu_s.get(name, 0.0) + cpu
        return SetUpEvents(
            connections=self.connections + other.connections,
            bot_joins=self.bot_joins + other.bot_joins,
            bot_invites=self.bot_invites + other.bot_invites,
            bot_notices=self.bot_notices + other.bot_notices,
            bot_other=self.bot_other + other.bot_other,
            users=self.users + other.users,
            users_by_type=dict(users_by_type),
            synapse_cpu_s=self.synapse_cpu_s + other.synapse_cpu_s,
            module_cpu_s=module_cpu_s,
        )


@contextmanager
def _read_only(db_path: Path) -> Iterator[sqlite3.Connection]:
    database = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)
    try:
        yield database
    finally:
        database.close()


def stream_position(db_path: Path) -> int:
    """The newest event's stream ordering: what a later count starts after."""
    with _read_only(db_path) as database:
        row = database.execute("SELECT COALESCE(MAX(stream_ordering), 0) FROM events").fetchone()
    return int(row[0])


def events_since(db_path: Path, since: int, bot: str, connections: int) -> SetUpEvents:
    """Every event persisted after stream position ``since``, sorted by cause."""
    counted = SetUpEvents(connections=connections)
    users_by_type: Counter[str] = Counter()
    with _read_only(db_path) as database:
        rows = database.execute(
            "SELECT e.type, e.sender, e.state_key, m.membership FROM events AS e"
            " LEFT JOIN room_memberships AS m ON m.event_id = e.event_id"
            " WHERE e.stream_ordering > ?",
            (since,),
        ).fetchall()
    for event_type, sender, state_key, membership in rows:
        if sender == bot:
            if event_type == "m.room.member" and membership == "join":
                counted.bot_joins += 1
            elif event_type == "m.room.message":
                counted.bot_notices += 1
            else:
                counted.bot_other += 1
        elif event_type == "m.room.member" and state_key == bot:
            counted.bot_invites += 1
        else:
            counted.users += 1
            users_by_type[event_type] += 1
    counted.users_by_type = dict(users_by_type)
    return counted


def module_cpu_s(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
    """CPU seconds so far of each of the module's background processes, by name."""
    cpu: dict[str, float] = {}
    for raw_name, labels, value in samples:
        name = raw_name.removesuffix("_total")
        process = labels.get("name", "")
        if process.startswith("room_connect_") and name in (
            "synapse_background_process_ru_utime_seconds",
            "synapse_background_process_ru_stime_seconds",
        ):
            cpu[process] = cpu.get(process, 0.0) + value
    return cpu
