"""Moving a homeserver with live connections from SQLite to PostgreSQL, as
an admin does: Synapse's ``synapse_port_db``, then the module's own
``python -m synapse_room_connect.port_db``, then Synapse on PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from harness import config as hsconfig
from harness.connect_api import notices_from
from harness.ferry_helpers import POINTER, connected_pair, pointers_in, send_edit, wait_for_pointer
from harness.postgres import PostgresServer
from harness.synapse import HomeserverFactory, unique_db_name

MODULE_TABLES = (
    "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'room\\_connect\\_%%'"
)


FAST_UPDATES = {"sleep_enabled": False}


def wait_for_background_updates(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.closing(sqlite3.connect(path)) as db:
            (pending,) = db.execute("SELECT count(*) FROM background_updates").fetchone()
        if pending == 0:
            return
        assert time.monotonic() < deadline, f"{pending} background updates still pending"
        time.sleep(0.5)


def run(*command: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=600
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{command[0]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def test_a_homeserver_moved_to_postgres_keeps_its_connections_and_pointers(
    make_homeserver: HomeserverFactory, postgres: PostgresServer
) -> None:
    # synapse_port_db refuses a database with background updates pending.
    hs = make_homeserver(name="port", config_overrides={"background_updates": FAST_UPDATES})
    pair = connected_pair(hs)
    first = pair.alice.send_message(pair.room_a, "before the move")
    pointer = wait_for_pointer(pair.bob, pair.room_b, first)["event_id"]
    notices_before = notices_from(pair.bob, pair.room_b, pair.bot)
    wait_for_background_updates(hs.sqlite_path)
    hs.stop()

    database = unique_db_name("ported")
    postgres.create_database(database)
    pg_config = hs.directory / "homeserver-postgres.yaml"
    config = yaml.safe_load(hs.config_path.read_text())
    config["database"] = hsconfig.postgres_database(postgres, database)
    pg_config.write_text(yaml.safe_dump(config))
    paths = ("--sqlite-database", hs.sqlite_path, "--postgres-config", pg_config)
    # In the wrong order it refuses: synapse_port_db copies every table both have.
    early = run(sys.executable, "-m", "synapse_room_connect.port_db", *paths, check=False)
    assert early.returncode == 1
    assert "run synapse_port_db first" in early.stderr
    run(Path(sys.executable).parent / "synapse_port_db", *paths)
    # Synapse's port leaves the module's tables behind.
    assert postgres.query(database, MODULE_TABLES) == [(0,)]

    ported = run(sys.executable, "-m", "synapse_room_connect.port_db", *paths)
    assert "room_connect_pointers: " in ported.stdout
    assert "ported at schema version" in ported.stdout
    # A second run changes nothing and says why.
    again = run(sys.executable, "-m", "synapse_room_connect.port_db", *paths, check=False)
    assert again.returncode == 1
    assert "already holds the module's data" in again.stderr

    hs.use_postgres(postgres, database)
    hs.start()
    # After synapse_port_db, Synapse's event position starts one ahead of the
    # last event, so the first new event wakes nothing that waits for a new
    # position (its own /sync included); on a live server that is traffic
    # anywhere. See docs/admin.md.
    pair.alice.send_message(pair.alice.create_room(name="elsewhere"), "first after the move")
    later = pair.alice.send_message(pair.room_a, "after the move")
    wait_for_pointer(pair.bob, pair.room_b, later)
    # The pointer mapping came along: an edit of an older message finds its pointer.
    send_edit(pair.alice, pair.room_a, first, "edited after the move")
    edit = pair.bob.wait_for_event(
        pair.room_b,
        lambda e: e.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace",
        60,
        description="the edit of the pre-move pointer",
    )
    assert edit["content"]["m.relates_to"]["event_id"] == pointer
    # Nothing announced again, nothing sent again.
    assert notices_from(pair.bob, pair.room_b, pair.bot) == notices_before
    carried = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    assert carried == [first, later]
