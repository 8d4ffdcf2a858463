"""The module's store on a real SQLite file beside Synapse's own tables, its
transactions run through Synapse's transaction class: migrations, the
connection cache, the ferry's cursors and pointers, the command cursor, the
reads of Synapse's events and the admin's queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from synapse_room_connect.constants import CONNECTION_EVENT_TYPE
from synapse_room_connect.core.handshake import Mode, Status
from synapse_room_connect.store import (
    SCHEMA_VERSION,
    ActiveTarget,
    CachedConnection,
    FerriedPointer,
    FerryRecord,
    NewEvent,
    Previous,
    SchemaTooNewError,
    SourceEvent,
    Store,
    TimelineRead,
    TimelineRow,
)
from synapse_room_connect.store.admin import DirectionRow, PointerTally, RoomPair
from synapse_room_connect.store.events import MAX_ROOMS_PER_READ
from synapse_room_connect.store.schema import MIGRATIONS
from synapse_room_connect.synapse_compat import UnsupportedSynapseError

from .synapse_db import SqliteModuleApi, rows, transaction

T = TypeVar("T")

# How a refused migration ends for the caller: the refusal itself, naming
# its reason, although the migration runs as a Synapse background process
# (which would log what its function raised and give None instead).
REFUSED = (SchemaTooNewError, UnsupportedSynapseError)

BOT = "@room-connect:hs1"
ALICE = "@alice:hs1"
A, B, C = "!a:hs1", "!b:hs1", "!c:hs1"


def run(awaitable: Awaitable[T]) -> T:
    async def wait() -> T:
        return await awaitable

    return asyncio.run(wait())


@pytest.fixture
def store(db_api: SqliteModuleApi) -> Store:
    return Store(db_api.as_module_api())


def tables(path: Path) -> set[str]:
    with transaction(path) as txn:
        txn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(row[0]) for row in txn.fetchall()}


# Migrations


def test_a_fresh_database_is_migrated_to_the_current_version(
    store: Store, synapse_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="synapse_room_connect")
    assert run(store.migrate()) == SCHEMA_VERSION
    assert run(store.schema_version()) == SCHEMA_VERSION
    assert {
        "room_connect_schema_version",
        "room_connect_connections",
        "room_connect_cursors",
        "room_connect_pointers",
        "room_connect_command_cursor",
    } <= tables(synapse_db)
    assert f"migrated schema from v0 to v{SCHEMA_VERSION}" in caplog.text


def test_a_second_process_finds_nothing_to_migrate(
    synapse_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = SqliteModuleApi(synapse_db), SqliteModuleApi(synapse_db)
    try:
        run(Store(first.as_module_api()).migrate())
        caplog.clear()
        caplog.set_level(logging.INFO, logger="synapse_room_connect")
        assert run(Store(second.as_module_api()).migrate()) == SCHEMA_VERSION
        assert "migrated schema" not in caplog.text
    finally:
        first.close()
        second.close()


def test_an_old_schema_is_migrated_forward_keeping_its_rows(store: Store, synapse_db: Path) -> None:
    # A database a release at schema version 1 left: one cached connection,
    # written before the mode column existed.
    with transaction(synapse_db) as txn:
        txn.execute(
            "CREATE TABLE room_connect_schema_version (singleton CHAR(1) NOT NULL DEFAULT 'X'"
            " UNIQUE CHECK (singleton = 'X'), version INTEGER NOT NULL)"
        )
        txn.execute("INSERT INTO room_connect_schema_version (version) VALUES (1)")
        for statement in MIGRATIONS[0]:
            txn.execute(statement)
        txn.execute(
            "INSERT INTO room_connect_connections"
            " (room_id, other_room_id, status, ferry, via, updated_ts)"
            " VALUES (?, ?, 'active', ?, '[\"hs1\"]', 1)",
            (A, B, BOT),
        )
    assert run(store.migrate()) == SCHEMA_VERSION
    assert run(store.cached_connection(A, B)) == CachedConnection(
        A, B, Status.ACTIVE, BOT, ("hs1",)
    )
    previous = run(store.swap_connection(A, B, Status.REVOKED, None, ["hs1"], Mode.FERRY, 2))
    assert previous == Previous(Status.ACTIVE, BOT, None)


def test_a_schema_from_a_newer_release_is_refused_untouched(
    store: Store, synapse_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with transaction(synapse_db) as txn:
        txn.execute(
            "CREATE TABLE room_connect_schema_version (singleton CHAR(1) NOT NULL DEFAULT 'X'"
            " UNIQUE CHECK (singleton = 'X'), version INTEGER NOT NULL)"
        )
        txn.execute(
            "INSERT INTO room_connect_schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(REFUSED):
        run(store.migrate())
    assert f"database schema is at version {SCHEMA_VERSION + 1}" in caplog.text
    assert "room_connect_connections" not in tables(synapse_db)
    with transaction(synapse_db) as txn:
        txn.execute("SELECT version FROM room_connect_schema_version")
        assert txn.fetchall() == [(SCHEMA_VERSION + 1,)]


def test_a_synapse_without_a_column_the_module_reads_creates_no_tables(
    store: Store, synapse_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with transaction(synapse_db) as txn:
        txn.execute("DROP TABLE rejections")
    with pytest.raises(REFUSED):
        run(store.migrate())
    assert "the database columns rejections" in caplog.text
    assert not {t for t in tables(synapse_db) if t.startswith("room_connect_")}


# The connection cache


def test_swap_connection_returns_the_row_it_replaced(store: Store) -> None:
    assert run(store.swap_connection(A, B, Status.REQUESTED, BOT, ["hs1"], Mode.FERRY, 1)) == (
        Previous()
    )
    previous = run(
        store.swap_connection(A, B, Status.ACTIVE, BOT, ["hs1", "hs2"], Mode.CLIENT_FANOUT, 2)
    )
    assert previous == Previous(Status.REQUESTED, BOT, Mode.FERRY)
    assert run(store.cached_connection(A, B)) == CachedConnection(
        A, B, Status.ACTIVE, BOT, ("hs1", "hs2")
    )
    assert run(store.cached_connection(B, A)) is None


def test_cached_connections_of_one_room_or_all(store: Store) -> None:
    for room, other in ((A, B), (A, C), (B, A)):
        run(store.swap_connection(room, other, Status.ACTIVE, BOT, ["hs1"], Mode.FERRY, 1))
    assert [(c.room_id, c.other_room_id) for c in run(store.cached_connections(A))] == [
        (A, B),
        (A, C),
    ]
    assert sorted((c.room_id, c.other_room_id) for c in run(store.cached_connections())) == [
        (A, B),
        (A, C),
        (B, A),
    ]


def test_active_targets_are_the_ferry_s_active_directions_with_a_start(store: Store) -> None:
    run(store.swap_connection(A, B, Status.ACTIVE, BOT, ["hs1"], Mode.FERRY, 1))
    run(store.swap_connection(A, C, Status.ACTIVE, BOT, ["hs1"], Mode.FERRY, 1))
    run(store.swap_connection(B, A, Status.ACTIVE, BOT, ["hs1"], Mode.FERRY, 1))
    run(store.swap_connection(C, A, Status.ACTIVE, "@other:hs1", ["hs1"], Mode.FERRY, 1))
    run(store.swap_connection(B, C, Status.REVOKED, BOT, ["hs1"], Mode.FERRY, 1))
    for room, other, since in ((A, B, 10), (A, C, 12), (C, A, 5), (B, C, 7)):
        run(store.set_active_since(room, other, since))
    # B -> A has no start yet, C -> A is another ferry's, B -> C is revoked.
    assert run(store.active_targets(BOT)) == {A: [ActiveTarget(B, 10), ActiveTarget(C, 12)]}


# The ferry's cursors and pointers


def test_record_ferried_keeps_pointers_and_moves_cursors_only_forward(store: Store) -> None:
    run(
        store.record_ferried(
            [
                FerryRecord(A, B, (FerriedPointer("$o1", "$p1"), FerriedPointer("$o2", "$p2")), 5),
                FerryRecord(A, C, (), 3),  # only skipped events: the cursor alone
            ]
        )
    )
    # A late writer with an older position and a pointer already recorded.
    run(store.record_ferried([FerryRecord(A, B, (FerriedPointer("$o1", "$p9"),), 4)]))
    assert run(store.cursors([A, B])) == {(A, B): 5, (A, C): 3}
    assert run(store.pointer_for("$o1", B)) == "$p1"
    assert run(store.pointer_for("$o2", B)) == "$p2"
    assert run(store.pointer_for("$o1", C)) is None
    assert run(store.original_of("$p2")) == SourceEvent(A, "$o2")
    assert run(store.original_of("$p9")) is None


def test_record_ferried_writes_all_or_nothing(store: Store) -> None:
    run(store.record_ferried([FerryRecord(A, B, (FerriedPointer("$o1", "$p1"),), 1)]))
    # A second original claiming the same pointer event breaks a unique index.
    bad = [
        FerryRecord(A, C, (FerriedPointer("$o2", "$p2"),), 2),
        FerryRecord(B, C, (FerriedPointer("$o3", "$p1"),), 2),
    ]
    with pytest.raises(Exception, match="UNIQUE"):
        run(store.record_ferried(bad))
    assert run(store.cursors([A, B])) == {(A, B): 1}
    assert run(store.pointer_for("$o2", C)) is None


def test_cursors_of_more_rooms_than_one_query_takes(store: Store) -> None:
    rooms = [f"!r{n:04}:hs1" for n in range(1203)]
    run(store.record_ferried([FerryRecord(room, A, (), n + 1) for n, room in enumerate(rooms)]))
    assert run(store.cursors(rooms)) == {(room, A): n + 1 for n, room in enumerate(rooms)}
    assert run(store.cursors([])) == {}


def test_pointer_due_while_the_direction_has_yet_to_reach_the_event(store: Store) -> None:
    run(store.swap_connection(A, B, Status.ACTIVE, BOT, ["hs1"], Mode.FERRY, 1))
    run(store.set_active_since(A, B, 10))
    assert run(store.pointer_due(A, B, 11, BOT))  # no cursor yet
    assert not run(store.pointer_due(A, B, 10, BOT))  # at the activation: never carried
    assert not run(store.pointer_due(A, B, 11, "@other:hs1"))  # another ferry's direction
    assert not run(store.pointer_due(A, C, 11, BOT))  # no such connection
    run(store.record_ferried([FerryRecord(A, B, (), 20)]))
    assert run(store.pointer_due(A, B, 21, BOT))
    assert not run(store.pointer_due(A, B, 20, BOT))
    run(store.swap_connection(A, B, Status.REVOKED, BOT, ["hs1"], Mode.FERRY, 2))
    assert not run(store.pointer_due(A, B, 21, BOT))


# The command cursor


def test_the_command_cursor_never_moves_back(db_api: SqliteModuleApi) -> None:
    commands = Store(db_api.as_module_api())
    assert run(commands.command_position()) is None
    run(commands.set_command_position(7))
    run(commands.set_command_position(3))
    assert run(commands.command_position()) == 7
    run(commands.set_command_position(9))
    assert run(commands.command_position()) == 9


def test_commands_after_are_messages_naming_the_command(
    db_api: SqliteModuleApi, synapse_db: Path
) -> None:
    with rows(synapse_db) as r:
        r.event(1, "$join", A, type="m.room.member", state_key=BOT, sender=BOT, membership="join")
        r.local_membership(1, "$join", A, BOT, "join")
        r.event(2, "$cmd", A, content={"msgtype": "m.text", "body": "!connect #b:hs1"})
        r.event(3, "$chat", A, content={"msgtype": "m.text", "body": "connect us"})
    commands = Store(db_api.as_module_api())
    assert run(commands.commands_after(BOT, 0, 3, 0, 10)) == [TimelineRow(2, "$cmd")]


# Reads of Synapse's events


def test_timelines_after_with_the_fences_of_the_rooms_asked(store: Store, synapse_db: Path) -> None:
    with rows(synapse_db) as r:
        r.event(1, "$a1", A)
        r.event(2, "$fence", A, type=CONNECTION_EVENT_TYPE, state_key=B, sender=BOT)
        r.event(3, "$b3", B)
        r.event(4, "$a4", A)
        r.event(5, "$enc", B, type="m.room.encryption", state_key="")
    read = run(store.timelines_after({A: 0, B: 0}, 5, 3, BOT, fences_after={A: 0, B: 0}))
    # Full at the limit: read up to the last row, and fences up to there only.
    assert read == TimelineRead(
        {A: [TimelineRow(1, "$a1"), TimelineRow(4, "$a4")], B: [TimelineRow(3, "$b3")]},
        4,
        True,
        {A: (2,)},
    )
    read = run(store.timelines_after({A: 4, B: 3}, 5, 3, BOT, fences_after={B: 3}))
    assert read == TimelineRead({B: [TimelineRow(5, "$enc")]}, 5, False, {B: (5,)})


def test_timelines_after_refuses_more_rooms_than_one_read_takes(store: Store) -> None:
    assert run(store.timelines_after({}, 5, 10, BOT)) == TimelineRead({}, 5, False)
    too_many = {f"!r{n}:hs1": 0 for n in range(MAX_ROOMS_PER_READ + 1)}
    with pytest.raises(ValueError, match="at most"):
        run(store.timelines_after(too_many, 5, 10, BOT))


def test_new_events_as_records(store: Store, synapse_db: Path) -> None:
    with rows(synapse_db) as r:
        r.event(1, "$m", A)
        r.event(2, "$join", A, type="m.room.member", state_key=ALICE, membership="join")
    assert run(store.new_events(0, 2, 10)) == [
        NewEvent(1, "$m", A, "m.room.message", ALICE),
        NewEvent(2, "$join", A, "m.room.member", ALICE, ALICE, "join"),
    ]


def test_sent_transactions_asks_nothing_for_nothing(
    store: Store, db_api: SqliteModuleApi, synapse_db: Path
) -> None:
    with rows(synapse_db) as r:
        r.device(BOT, "FERRY")
        r.event(1, "$p", B, sender=BOT)
        r.transaction_id(B, "t1", "$p", BOT, "FERRY")
    wanted = [(B, "t1", BOT), (B, "t2", BOT)]
    assert run(store.sent_transactions("FERRY", wanted)) == {(B, "t1"): "$p"}
    before = len(db_api.interactions)
    assert run(store.sent_transactions("FERRY", [])) == {}
    assert len(db_api.interactions) == before


# The admin's queries


def test_admin_pairs_fold_both_directions_and_page(store: Store, db_api: SqliteModuleApi) -> None:
    admin = store
    for room, other in ((A, B), (B, A), (C, A), (B, C)):
        run(store.swap_connection(room, other, Status.ACTIVE, BOT, ["hs1"], Mode.FERRY, 1))
    assert run(admin.pairs_after(None, 10)) == [RoomPair(A, B), RoomPair(A, C), RoomPair(B, C)]
    assert run(admin.pairs_after(None, 2)) == [RoomPair(A, B), RoomPair(A, C)]
    assert run(admin.pairs_after(RoomPair(A, C), 2)) == [RoomPair(B, C)]


def test_admin_directions_and_pointer_tallies(
    store: Store, db_api: SqliteModuleApi, synapse_db: Path
) -> None:
    admin = store
    run(store.swap_connection(A, B, Status.ACTIVE, BOT, ["hs1"], Mode.FERRY, 5))
    run(store.swap_connection(B, A, Status.REQUESTED, None, ["hs1"], Mode.CLIENT_FANOUT, 6))
    run(store.swap_connection(C, A, Status.ACTIVE, BOT, ["hs1"], Mode.FERRY, 7))
    assert sorted(run(admin.directions([A, B])), key=lambda d: d.room_id) == [
        DirectionRow(A, B, "active", BOT, "ferry", 5),
        DirectionRow(B, A, "requested", None, "client_fanout", 6),
    ]
    assert run(admin.directions([])) == []
    with rows(synapse_db) as r:
        r.event(1, "$p1", B, sender=BOT, ts=3000)
    run(store.record_ferried([FerryRecord(A, B, (FerriedPointer("$o1", "$p1"),), 1)]))
    assert run(admin.pointer_tallies([B])) == [PointerTally(A, B, 1, 3000)]
    assert run(admin.pointer_tallies([])) == []
