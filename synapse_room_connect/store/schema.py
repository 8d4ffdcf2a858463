"""The module's own tables: their creation and forward migrations, and the
base every part of the store runs its queries through.

Everything goes through ``ModuleApi.run_db_interaction`` so it runs on
whichever engine the homeserver uses (SQLite or PostgreSQL); SQL uses ``?``
placeholders, which Synapse rewrites for PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi, make_deferred_yieldable
from twisted.internet.defer import Deferred

from synapse_room_connect import synapse_compat

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Arbitrary but fixed: every process of a deployment takes the same advisory
# lock, so workers that start together do not race to create tables.
_PG_MIGRATION_LOCK: Final = 0x2923_0001

# Each entry moves the schema from version N to N+1. Never edit a released
# entry; append a new one.
MIGRATIONS: Final[Sequence[Sequence[str]]] = (
    (
        # Cache of each connection as derived from room state, one row per
        # (local room, other room) direction. Room state stays the source of
        # truth; this table can be rebuilt from it.
        """
        CREATE TABLE room_connect_connections (
            room_id TEXT NOT NULL,
            other_room_id TEXT NOT NULL,
            status TEXT NOT NULL,
            ferry TEXT,
            via TEXT NOT NULL,
            updated_ts BIGINT NOT NULL,
            PRIMARY KEY (room_id, other_room_id)
        )
        """,
        "CREATE INDEX room_connect_connections_other ON room_connect_connections (other_room_id)",
    ),
    (
        # Stream position of the event that activated the connection: events
        # at or before it are never ferried over it.
        "ALTER TABLE room_connect_connections ADD COLUMN active_since BIGINT",
        # How far the ferry has read each source room for each target room,
        # in Synapse's stream ordering; what lies beyond is ferried on the
        # next run, crash or not. Per target, so a connection that activates
        # while another is mid-backlog starts from its own position.
        """
        CREATE TABLE room_connect_cursors (
            room_id TEXT NOT NULL,
            target_room_id TEXT NOT NULL,
            stream_ordering BIGINT NOT NULL,
            PRIMARY KEY (room_id, target_room_id)
        )
        """,
        # Each original's pointer in each target room, for relations.
        """
        CREATE TABLE room_connect_pointers (
            source_room_id TEXT NOT NULL,
            source_event_id TEXT NOT NULL,
            target_room_id TEXT NOT NULL,
            pointer_event_id TEXT NOT NULL,
            PRIMARY KEY (source_event_id, target_room_id)
        )
        """,
        "CREATE UNIQUE INDEX room_connect_pointers_pointer"
        " ON room_connect_pointers (pointer_event_id)",
    ),
    (
        # ferry or client_fanout as last derived, so a switch (a room turning
        # on encryption) is announced once.
        "ALTER TABLE room_connect_connections ADD COLUMN mode TEXT",
    ),
    (
        # The stream position of the last `!connect` command answered, so
        # commands sent while the acting process was down are answered once
        # after it restarts (store/commands.py).
        """
        CREATE TABLE room_connect_command_cursor (
            singleton CHAR(1) NOT NULL DEFAULT 'X' UNIQUE CHECK (singleton = 'X'),
            stream_ordering BIGINT NOT NULL
        )
        """,
    ),
    (
        # The admin listing counts pointers per target room; without this it
        # scanned the whole table on every page.
        "CREATE INDEX room_connect_pointers_target"
        " ON room_connect_pointers (target_room_id, source_room_id)",
    ),
    (
        # Which ferry process may send for a connection (store_leases.py),
        # so ownership passes through here when the worker list changes
        # with processes restarted one at a time.
        """
        CREATE TABLE room_connect_ferry_leases (
            lease_key TEXT NOT NULL PRIMARY KEY,
            owner TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            expires_ms BIGINT NOT NULL
        )
        """,
    ),
    (
        # Who the receiving room wants to send what crosses into it (its
        # consent's "senders"); NULL: the server's default. A cache like the
        # rest of the row.
        "ALTER TABLE room_connect_connections ADD COLUMN senders TEXT",
        # Each ghost the module registered: whom it speaks for, and the
        # profile last given to it, so a change of the person's name or
        # avatar is followed once.
        """
        CREATE TABLE room_connect_ghosts (
            ghost_user_id TEXT NOT NULL PRIMARY KEY,
            user_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            displayname TEXT NOT NULL,
            avatar_url TEXT,
            created_ts BIGINT NOT NULL
        )
        """,
        "CREATE INDEX room_connect_ghosts_person ON room_connect_ghosts (room_id, user_id)",
        # Rooms told that ghosts could not join them, so a restart does not
        # tell them again.
        """
        CREATE TABLE room_connect_ghost_notices (
            room_id TEXT NOT NULL PRIMARY KEY,
            told_ts BIGINT NOT NULL
        )
        """,
    ),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)

# Which of MIGRATIONS the tables are at; created before any of them.
SCHEMA_VERSION_TABLE: Final = """
    CREATE TABLE IF NOT EXISTS room_connect_schema_version (
        singleton CHAR(1) NOT NULL DEFAULT 'X' UNIQUE CHECK (singleton = 'X'),
        version INTEGER NOT NULL
    )
"""

_MIGRATION_ATTEMPTS: Final = 3


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer release of this module."""


def _migrate_txn(txn: LoggingTransaction) -> tuple[int, int]:
    if synapse_compat.is_postgres(txn):
        txn.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
    txn.execute(SCHEMA_VERSION_TABLE)
    txn.execute("SELECT version FROM room_connect_schema_version")
    row = txn.fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"synapse_room_connect: database schema is at version {current} but this "
            f"release knows only up to {SCHEMA_VERSION}; upgrade the module"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version - 1]:
            txn.execute(statement)
    if row is None:
        txn.execute(
            "INSERT INTO room_connect_schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
        )
    elif current != SCHEMA_VERSION:
        txn.execute("UPDATE room_connect_schema_version SET version = ?", (SCHEMA_VERSION,))
    return current, SCHEMA_VERSION


@attrs.frozen
class _Migrated:
    """The schema version reached, or why the migration was refused."""

    version: int | None
    error: Exception = attrs.field(factory=lambda: RuntimeError("schema migration failed"))


class StoreBase:
    """Runs queries once the schema is current. Every method waits for migrations."""

    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._migrated = False
        self._migration: Callable[[], Deferred[_Migrated | None]] | None = None

    async def migrate(self) -> int:
        """Bring the schema up to date, once per process; every caller waits
        for the same run, so an early request cannot race the start-up one.
        A refusal (a schema from a newer release, a Synapse without a column
        the module reads) is raised to every caller, naming its reason."""
        if self._migration is None:
            self._migration = synapse_compat.shared(
                self._api.run_as_background_process("room_connect_migrate", self._migrate_outcome)
            )
        try:
            outcome = await make_deferred_yieldable(self._migration())
        except Exception:
            self._migration = None  # let a later caller try again
            raise
        if outcome is None or outcome.version is None:
            self._migration = None
            raise RuntimeError("schema migration failed") if outcome is None else outcome.error
        return outcome.version

    async def _migrate_outcome(self) -> _Migrated:
        # A background process logs what its function raises and returns None,
        # which would leave every caller without the reason: hand it back.
        try:
            return _Migrated(await self._migrate())
        except Exception as e:
            logger.error("synapse_room_connect cannot use the database: %s", e)
            return _Migrated(None, e)

    async def _migrate(self) -> int:
        # Several processes may migrate at once. They serialise on an advisory
        # lock, but under REPEATABLE READ a waiter's snapshot predates the
        # winner's commit, so it fails on the tables the winner created; a new
        # transaction then sees them and finds nothing to do.
        # Synapse's tables first: a release whose schema lacks what the module
        # reads stops here, naming itself, not at the first message.
        await self._api.run_db_interaction(
            "room_connect_check_synapse_tables", synapse_compat.require_synapse_tables
        )
        for attempt in range(1, _MIGRATION_ATTEMPTS + 1):
            try:
                before, after = await self._api.run_db_interaction(
                    "room_connect_migrate", _migrate_txn
                )
                break
            except SchemaTooNewError:
                raise
            except Exception as e:
                if attempt == _MIGRATION_ATTEMPTS:
                    raise
                logger.info("Schema migration raced another process (%s); retrying", e)
        if before != after:
            logger.info("synapse_room_connect: migrated schema from v%d to v%d", before, after)
        self._migrated = True
        return after

    async def _run(self, desc: str, func: Callable[[LoggingTransaction], T]) -> T:
        if not self._migrated:
            await self.migrate()
        return await self._api.run_db_interaction(desc, func)

    async def _first_row(
        self, desc: str, sql: str, args: tuple[Any, ...]
    ) -> tuple[Any, ...] | None:
        def txn_fn(txn: LoggingTransaction) -> tuple[Any, ...] | None:
            txn.execute(sql, args)
            row = txn.fetchone()
            return None if row is None else tuple(row)

        return await self._run(desc, txn_fn)

    async def schema_version(self) -> int:
        def txn_fn(txn: LoggingTransaction) -> int:
            txn.execute("SELECT version FROM room_connect_schema_version")
            row = txn.fetchone()
            return int(row[0]) if row else 0

        return await self._run("room_connect_schema_version", txn_fn)
