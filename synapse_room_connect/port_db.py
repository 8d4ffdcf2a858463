"""Carry the module's tables from SQLite to PostgreSQL, after ``synapse_port_db``.

``synapse_port_db`` copies only the tables that Synapse's own schema has on
PostgreSQL, so the ``room_connect_*`` tables stay behind. Started without
them, the module would take every connection for new: it would announce each
one again and send again every pointer whose transaction ID Synapse no longer
keeps (after a day), and edits, reactions and redactions of older messages
would find no pointer. Run this after ``synapse_port_db`` and before Synapse
starts on PostgreSQL, with the same two arguments::

    python -m synapse_room_connect.port_db \\
        --sqlite-database homeserver.db --postgres-config homeserver-postgres.yaml

It refuses, changing nothing, when the PostgreSQL database already holds
the module's data (ported before, or Synapse ran there with the module).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml  # type: ignore[import-untyped,unused-ignore]  # Synapse's own dependency

from synapse_room_connect.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_TABLE,
)
from synapse_room_connect.synapse_compat import sql

# In an order that any later foreign key would accept; the schema version last.
TABLES: Final = (
    "room_connect_connections",
    "room_connect_cursors",
    "room_connect_pointers",
    "room_connect_command_cursor",
    "room_connect_ghosts",
    "room_connect_ghost_notices",
    # Not room_connect_ferry_leases: a lease means something only while the
    # process that took it runs.
)
_ROWS_PER_INSERT: Final = 1000


class PortError(Exception):
    """Why nothing was ported; the message is for the admin."""


def sqlite_version(db: sqlite3.Connection) -> int | None:
    """The module's schema version in SQLite; None if it never ran there."""
    found = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
        ("room_connect_schema_version",),
    ).fetchone()
    if found is None:
        return None
    row = db.execute("SELECT version FROM room_connect_schema_version").fetchone()
    return None if row is None else int(row[0])


def postgres_args(config_path: Path) -> dict[str, Any]:
    """psycopg2's connection arguments from a Synapse config's ``database``."""
    config = yaml.safe_load(config_path.read_text()) or {}
    database = config.get("database") if isinstance(config, Mapping) else None
    if not isinstance(database, Mapping) or database.get("name") != "psycopg2":
        raise PortError(f"{config_path}: database.name must be psycopg2")
    args = database.get("args") or {}
    # cp_* configure Synapse's connection pool, not the connection.
    return {k: v for k, v in args.items() if not str(k).startswith("cp_")}


def _existing_rows(cur: Any) -> dict[str, int]:
    cur.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_name LIKE 'room\\_connect\\_%%'"
    )
    present = {str(row[0]) for row in cur.fetchall()}
    counts = {}
    for table in sorted(present - {"room_connect_schema_version"}):
        cur.execute(f"SELECT count(*) FROM {table}")
        counts[table] = int(cur.fetchone()[0])
    return counts


def port(db: sqlite3.Connection, pg: Any) -> dict[str, int]:
    """Copy every module table in one PostgreSQL transaction; rows per table."""
    version = sqlite_version(db)
    if version is None:
        raise PortError("the SQLite database holds no synapse_room_connect tables: nothing to port")
    if version != SCHEMA_VERSION:
        raise PortError(
            f"the SQLite database's module tables are at schema version {version}, this release "
            f"is at {SCHEMA_VERSION}: start Synapse once on SQLite with this release first"
        )
    copied: dict[str, int] = {}
    with pg, pg.cursor() as cur:
        # Before synapse_port_db, these tables would be in its way: it copies
        # every table both databases have.
        if not sql.has_synapse_schema(cur):
            raise PortError("PostgreSQL has no Synapse tables yet: run synapse_port_db first")
        existing = _existing_rows(cur)
        busy = {table: n for table, n in existing.items() if n}
        if busy:
            listed = ", ".join(f"{table} ({n} rows)" for table, n in busy.items())
            raise PortError(f"PostgreSQL already holds the module's data: {listed}")
        if not existing:
            cur.execute(SCHEMA_VERSION_TABLE)
            for statements in MIGRATIONS:
                for statement in statements:
                    cur.execute(statement)
        cur.execute("DELETE FROM room_connect_schema_version")
        cur.execute(
            "INSERT INTO room_connect_schema_version (version) VALUES (%s)", (SCHEMA_VERSION,)
        )
        for table in TABLES:
            copied[table] = _copy(db, cur, table)
    return copied


def _copy(db: sqlite3.Connection, cur: Any, table: str) -> int:
    columns = [str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")]
    rows = db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    insert = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)})"
    )
    for n in range(0, len(rows), _ROWS_PER_INSERT):
        cur.executemany(insert, rows[n : n + _ROWS_PER_INSERT])
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sqlite-database", type=Path, required=True)
    parser.add_argument(
        "--postgres-config", type=Path, required=True, help="a Synapse config naming the database"
    )
    args = parser.parse_args(argv)
    try:
        import psycopg2  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        print("psycopg2 is missing: install matrix-synapse[postgres]", file=sys.stderr)
        return 2
    if not args.sqlite_database.is_file():
        print(f"{args.sqlite_database}: no such file", file=sys.stderr)
        return 2
    try:
        connection_args = postgres_args(args.postgres_config)
        db = sqlite3.connect(f"file:{args.sqlite_database}?mode=ro", uri=True)
        pg = psycopg2.connect(**connection_args)
        try:
            copied = port(db, pg)
        finally:
            pg.close()
            db.close()
    except (PortError, OSError, yaml.YAMLError, sqlite3.Error, psycopg2.Error) as e:
        print(f"synapse_room_connect: nothing ported: {e}", file=sys.stderr)
        return 1
    for table, count in copied.items():
        print(f"{table}: {count} rows")
    print(f"synapse_room_connect: ported at schema version {SCHEMA_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
