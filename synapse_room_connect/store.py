"""The module's own tables: creation, forward migrations and queries.

Everything here goes through ``ModuleApi.run_db_interaction`` so it runs on
whichever engine the homeserver uses (SQLite or PostgreSQL); SQL uses ``?``
placeholders, which Synapse rewrites for PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi, make_deferred_yieldable
from synapse.storage.engines import PostgresEngine
from synapse.util.async_helpers import ObservableDeferred

from synapse_room_connect.handshake import Mode, Status

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
)

SCHEMA_VERSION: Final = len(MIGRATIONS)

_MIGRATION_ATTEMPTS: Final = 3


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer release of this module."""


def _migrate_txn(txn: LoggingTransaction) -> tuple[int, int]:
    if isinstance(txn.database_engine, PostgresEngine):
        txn.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
    txn.execute(
        """
        CREATE TABLE IF NOT EXISTS room_connect_schema_version (
            singleton CHAR(1) NOT NULL DEFAULT 'X' UNIQUE CHECK (singleton = 'X'),
            version INTEGER NOT NULL
        )
        """
    )
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


def _set_cursor_txn(
    txn: LoggingTransaction, room_id: str, target_room_id: str, stream: int
) -> None:
    # Only forward: a late writer can never move a cursor back over events
    # already ferried.
    txn.execute(
        """
        INSERT INTO room_connect_cursors (room_id, target_room_id, stream_ordering)
        VALUES (?, ?, ?)
        ON CONFLICT (room_id, target_room_id) DO UPDATE
        SET stream_ordering = EXCLUDED.stream_ordering
        WHERE room_connect_cursors.stream_ordering < EXCLUDED.stream_ordering
        """,
        (room_id, target_room_id, stream),
    )


@attrs.frozen
class CachedConnection:
    room_id: str
    other_room_id: str
    status: Status
    ferry: str | None
    via: tuple[str, ...]


@attrs.frozen
class ActiveTarget:
    """A room that an active connection ferries a source room's events into."""

    room_id: str
    # Stream position of the later consent: events before it stay put.
    since: int


@attrs.frozen
class NewEvent:
    """A newly persisted timeline event, as much of it as the module decides on."""

    stream: int
    event_id: str
    room_id: str
    type: str
    sender: str
    state_key: str | None = None
    membership: str | None = None


@attrs.frozen
class Previous:
    """A direction's cached row before an update; all None when it is new."""

    status: Status | None = None
    ferry: str | None = None
    mode: Mode | None = None


class Store:
    """Typed access to the module's tables. Every method waits for migrations."""

    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._migrated = False
        self._migration: ObservableDeferred[int | None] | None = None

    async def migrate(self) -> int:
        """Bring the schema up to date, once per process; every caller waits
        for the same run, so an early request cannot race the start-up one."""
        if self._migration is None:
            self._migration = ObservableDeferred(
                self._api.run_as_background_process("room_connect_migrate", self._migrate),
                consumeErrors=True,
            )
        try:
            version = await make_deferred_yieldable(self._migration.observe())
        except Exception:
            self._migration = None  # let a later caller try again
            raise
        assert version is not None
        return version

    async def _migrate(self) -> int:
        # Several processes may migrate at once. They serialise on an advisory
        # lock, but under REPEATABLE READ a waiter's snapshot predates the
        # winner's commit, so it fails on the tables the winner created; a new
        # transaction then sees them and finds nothing to do.
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

    async def schema_version(self) -> int:
        def txn_fn(txn: LoggingTransaction) -> int:
            txn.execute("SELECT version FROM room_connect_schema_version")
            row = txn.fetchone()
            return int(row[0]) if row else 0

        return await self._run("room_connect_schema_version", txn_fn)

    async def swap_connection(
        self,
        room_id: str,
        other_room_id: str,
        status: Status,
        ferry: str | None,
        via: Sequence[str],
        mode: Mode,
        now_ms: int,
    ) -> Previous:
        """Record the derived status of one direction; return what it was."""

        def txn_fn(txn: LoggingTransaction) -> Previous:
            txn.execute(
                "SELECT status, ferry, mode FROM room_connect_connections"
                " WHERE room_id = ? AND other_room_id = ?",
                (room_id, other_room_id),
            )
            row = txn.fetchone()
            txn.execute(
                """
                INSERT INTO room_connect_connections
                    (room_id, other_room_id, status, ferry, via, mode, updated_ts)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (room_id, other_room_id) DO UPDATE SET
                    status = EXCLUDED.status, ferry = EXCLUDED.ferry, via = EXCLUDED.via,
                    mode = EXCLUDED.mode, updated_ts = EXCLUDED.updated_ts
                """,
                (
                    room_id,
                    other_room_id,
                    status.value,
                    ferry,
                    json.dumps(list(via)),
                    mode.value,
                    now_ms,
                ),
            )
            if row is None:
                return Previous()
            # Rows written before the mode column existed have none.
            return Previous(Status(row[0]), row[1], None if row[2] is None else Mode(row[2]))

        return await self._run("room_connect_swap_connection", txn_fn)

    async def cached_connection(self, room_id: str, other_room_id: str) -> CachedConnection | None:
        def txn_fn(txn: LoggingTransaction) -> CachedConnection | None:
            txn.execute(
                "SELECT room_id, other_room_id, status, ferry, via FROM room_connect_connections"
                " WHERE room_id = ? AND other_room_id = ?",
                (room_id, other_room_id),
            )
            r = txn.fetchone()
            return (
                None
                if r is None
                else CachedConnection(r[0], r[1], Status(r[2]), r[3], tuple(json.loads(r[4])))
            )

        return await self._run("room_connect_cached_connection", txn_fn)

    async def cached_connections(self, room_id: str | None = None) -> list[CachedConnection]:
        """Cached rows for ``room_id``, or every row when it is None."""

        def txn_fn(txn: LoggingTransaction) -> list[CachedConnection]:
            sql = "SELECT room_id, other_room_id, status, ferry, via FROM room_connect_connections"
            if room_id is None:
                txn.execute(sql)
            else:
                txn.execute(sql + " WHERE room_id = ?", (room_id,))
            return [
                CachedConnection(r[0], r[1], Status(r[2]), r[3], tuple(json.loads(r[4])))
                for r in txn.fetchall()
            ]

        return await self._run("room_connect_cached_connections", txn_fn)

    # -- ferry ----------------------------------------------------------------

    async def set_active_since(self, room_id: str, other_room_id: str, stream: int) -> None:
        def txn_fn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE room_connect_connections SET active_since = ?"
                " WHERE room_id = ? AND other_room_id = ?",
                (stream, room_id, other_room_id),
            )

        await self._run("room_connect_set_active_since", txn_fn)

    async def active_targets(self, ferry: str) -> dict[str, list[ActiveTarget]]:
        """For each source room, the rooms it ferries to and since when."""

        def txn_fn(txn: LoggingTransaction) -> dict[str, list[ActiveTarget]]:
            txn.execute(
                "SELECT room_id, other_room_id, active_since FROM room_connect_connections"
                " WHERE status = ? AND ferry = ? AND active_since IS NOT NULL",
                (Status.ACTIVE.value, ferry),
            )
            targets: dict[str, list[ActiveTarget]] = {}
            for room_id, other, since in txn.fetchall():
                targets.setdefault(room_id, []).append(ActiveTarget(other, int(since)))
            return targets

        return await self._run("room_connect_active_targets", txn_fn)

    async def get_cursor(self, room_id: str, target_room_id: str) -> int | None:
        def txn_fn(txn: LoggingTransaction) -> int | None:
            txn.execute(
                "SELECT stream_ordering FROM room_connect_cursors"
                " WHERE room_id = ? AND target_room_id = ?",
                (room_id, target_room_id),
            )
            row = txn.fetchone()
            return None if row is None else int(row[0])

        return await self._run("room_connect_get_cursor", txn_fn)

    async def set_cursor(self, room_id: str, target_room_id: str, stream: int) -> None:
        def txn_fn(txn: LoggingTransaction) -> None:
            _set_cursor_txn(txn, room_id, target_room_id, stream)

        await self._run("room_connect_set_cursor", txn_fn)

    async def events_after(
        self, room_id: str, after: int, upto: int, limit: int, exclude_sender: str
    ) -> list[tuple[int, str]]:
        """Timeline events of ``room_id`` in stream positions (after, upto], in order.

        Reads Synapse's own ``events`` table: it is the durable record of
        what was persisted, so nothing depends on a notification having
        arrived. ``upto`` is a position up to which everything is persisted,
        so an event another writer commits late is not skipped. Outliers and
        rejected events are not part of the timeline; the bot's own events
        (pointers, notices) are never carried, and leaving them out here
        spares a pass per pointer.
        """

        def txn_fn(txn: LoggingTransaction) -> list[tuple[int, str]]:
            txn.execute(
                """
                SELECT e.stream_ordering, e.event_id FROM events AS e
                LEFT JOIN rejections AS r ON r.event_id = e.event_id
                WHERE e.room_id = ? AND e.stream_ordering > ? AND e.stream_ordering <= ?
                    AND NOT e.outlier AND r.event_id IS NULL AND e.sender != ?
                ORDER BY e.stream_ordering
                LIMIT ?
                """,
                (room_id, after, upto, exclude_sender, limit),
            )
            return [(int(row[0]), str(row[1])) for row in txn.fetchall()]

        return await self._run("room_connect_events_after", txn_fn)

    async def new_events(self, after: int, upto: int, limit: int) -> list[NewEvent]:
        """Every room's timeline events in stream positions (after, upto], in order."""

        def txn_fn(txn: LoggingTransaction) -> list[NewEvent]:
            txn.execute(
                """
                SELECT e.stream_ordering, e.event_id, e.room_id, e.type, e.sender,
                    e.state_key, m.membership
                FROM events AS e
                LEFT JOIN rejections AS r ON r.event_id = e.event_id
                LEFT JOIN room_memberships AS m ON m.event_id = e.event_id
                WHERE e.stream_ordering > ? AND e.stream_ordering <= ?
                    AND NOT e.outlier AND r.event_id IS NULL
                ORDER BY e.stream_ordering
                LIMIT ?
                """,
                (after, upto, limit),
            )
            return [NewEvent(int(row[0]), *row[1:]) for row in txn.fetchall()]

        return await self._run("room_connect_new_events", txn_fn)

    async def record_ferried(
        self,
        source_room_id: str,
        target_room_id: str,
        pointers: Sequence[tuple[str, str]],
        stream: int,
    ) -> None:
        """Record (source event, pointer) pairs and move the cursor to
        ``stream``, atomically: a crash leaves either both or neither, and a
        resend after "neither" is answered from Synapse's transaction IDs."""

        def txn_fn(txn: LoggingTransaction) -> None:
            txn.execute_batch(
                """
                INSERT INTO room_connect_pointers
                    (source_room_id, source_event_id, target_room_id, pointer_event_id)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (source_event_id, target_room_id) DO NOTHING
                """,
                [(source_room_id, source, target_room_id, ptr) for source, ptr in pointers],
            )
            _set_cursor_txn(txn, source_room_id, target_room_id, stream)

        await self._run("room_connect_record_ferried", txn_fn)

    async def sent_transactions(
        self, room_id: str, user_id: str, device_id: str, txn_ids: Sequence[str]
    ) -> dict[str, str]:
        """Transaction ID -> event ID of those already sent, from Synapse's own
        record (kept for a day): what a crash between sending and recording
        left behind."""

        def txn_fn(txn: LoggingTransaction) -> dict[str, str]:
            marks = ", ".join("?" for _ in txn_ids)
            txn.execute(
                "SELECT txn_id, event_id FROM event_txn_id_device_id"
                f" WHERE room_id = ? AND user_id = ? AND device_id = ? AND txn_id IN ({marks})",
                (room_id, user_id, device_id, *txn_ids),
            )
            return {str(row[0]): str(row[1]) for row in txn.fetchall()}

        if not txn_ids:
            return {}
        return await self._run("room_connect_sent_transactions", txn_fn)

    async def pointer_for(self, source_event_id: str, target_room_id: str) -> str | None:
        def txn_fn(txn: LoggingTransaction) -> str | None:
            txn.execute(
                "SELECT pointer_event_id FROM room_connect_pointers"
                " WHERE source_event_id = ? AND target_room_id = ?",
                (source_event_id, target_room_id),
            )
            row = txn.fetchone()
            return None if row is None else str(row[0])

        return await self._run("room_connect_pointer_for", txn_fn)

    async def original_of(self, pointer_event_id: str) -> tuple[str, str] | None:
        """(source room, source event) of a pointer the bot sent."""

        def txn_fn(txn: LoggingTransaction) -> tuple[str, str] | None:
            txn.execute(
                "SELECT source_room_id, source_event_id FROM room_connect_pointers"
                " WHERE pointer_event_id = ?",
                (pointer_event_id,),
            )
            row = txn.fetchone()
            return None if row is None else (str(row[0]), str(row[1]))

        return await self._run("room_connect_original_of", txn_fn)
