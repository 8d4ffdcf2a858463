"""A real Synapse database for unit tests of SQL: Synapse's own schema,
created by Synapse on an SQLite file, and the module API's two calls the
store makes, run on it through Synapse's own connection and transaction
classes.

Uses Synapse internals (``synapse.storage``); checked against Synapse 1.163.2.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from synapse.module_api import LoggingTransaction, ModuleApi
from synapse.storage.database import LoggingDatabaseConnection
from synapse.storage.engines import create_engine
from synapse.storage.prepare_database import prepare_database
from twisted.internet import defer

logger = logging.getLogger(__name__)

T = TypeVar("T")

SERVER_NAME = "hs1"


def connect(path: Path) -> LoggingDatabaseConnection:
    """A connection to an SQLite file as Synapse opens one: its engine's
    per-connection set-up (foreign keys on, WAL) and its cursor class."""
    engine = create_engine({"name": "sqlite3", "args": {"database": str(path)}})
    connection = LoggingDatabaseConnection(
        conn=sqlite3.connect(str(path)),
        engine=engine,
        default_txn_name="unit_test",
        server_name=SERVER_NAME,
    )
    engine.on_new_connection(connection)
    return connection


def create_synapse_schema(path: Path) -> None:
    """Synapse's full schema (main and state) on a new SQLite file, as
    Synapse creates it on first start with no configuration (so no module
    schemas, this module's included)."""
    connection = connect(path)
    try:
        prepare_database(connection, connection.engine, config=None)
    finally:
        connection.close()


def copy_schema(template: Path, path: Path) -> Path:
    """A copy of a prepared database: preparing one takes a second or two."""
    shutil.copyfile(template, path)
    return path


@contextmanager
def transaction(path: Path) -> Iterator[LoggingTransaction]:
    """One committed transaction, for a test to set up or read rows directly."""
    connection = connect(path)
    try:
        txn = connection.cursor(txn_name="unit_test")
        yield txn
        connection.commit()
    finally:
        connection.close()


class SqliteModuleApi:
    """The ``ModuleApi`` calls the store makes, over a real SQLite file:

    - ``run_db_interaction``: as ``DatabasePool.new_transaction`` does it, the
      function gets Synapse's ``LoggingTransaction`` over a cursor, then the
      connection commits, or rolls back and the error propagates;
    - ``run_as_background_process``: a Deferred of the function's result,
      which, as Synapse's, is None (logged) when the function raised;
    - ``server_name``.

    Checked against Synapse 1.163.2 (synapse/module_api/__init__.py and
    synapse/storage/database.py)."""

    server_name = SERVER_NAME

    def __init__(self, path: Path) -> None:
        self._connection = connect(path)
        self.interactions: list[str] = []  # desc of each run_db_interaction

    def as_module_api(self) -> ModuleApi:
        return cast(ModuleApi, self)

    def close(self) -> None:
        self._connection.close()

    async def run_db_interaction(
        self, desc: str, func: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        self.interactions.append(desc)
        txn = self._connection.cursor(txn_name=desc)
        try:
            result = func(txn, *args, **kwargs)
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        finally:
            txn.close()
        return result

    def run_as_background_process(
        self, desc: str, func: Callable[..., Awaitable[T | None]], *args: Any, **kwargs: Any
    ) -> defer.Deferred[T | None]:
        async def run() -> T | None:
            try:
                return await func(*args, **kwargs)
            except Exception:
                logger.exception("Background process '%s' threw an exception", desc)
                return None

        return defer.ensureDeferred(run())


class SynapseRows:
    """Rows in Synapse's own tables, as ``PersistEventsStore`` writes them for
    an event (``events`` and ``event_json``; ``room_memberships`` for a member
    event; ``rejections`` for a rejected one), and the other tables the
    module's SQL reads. Column lists checked against Synapse 1.163.2's schema."""

    def __init__(self, txn: LoggingTransaction) -> None:
        self._txn = txn

    def event(
        self,
        stream: int,
        event_id: str,
        room_id: str,
        *,
        type: str = "m.room.message",
        sender: str = "@alice:hs1",
        state_key: str | None = None,
        content: dict[str, Any] | None = None,
        ts: int = 1000,
        outlier: bool = False,
        membership: str | None = None,
        rejected: bool = False,
    ) -> None:
        body = content if content is not None else {"body": event_id}
        event = {
            "event_id": event_id,
            "room_id": room_id,
            "type": type,
            "sender": sender,
            "content": body,
            "origin_server_ts": ts,
        }
        if state_key is not None:
            event["state_key"] = state_key
        self._txn.execute(
            "INSERT INTO events (stream_ordering, topological_ordering, event_id, type,"
            " room_id, content, processed, outlier, depth, origin_server_ts, received_ts,"
            " sender, contains_url, instance_name, state_key, rejection_reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stream,
                stream,
                event_id,
                type,
                room_id,
                json.dumps(body),
                True,
                outlier,
                stream,
                ts,
                ts,
                sender,
                False,
                "master",
                state_key,
                "auth" if rejected else None,
            ),
        )
        self._txn.execute(
            "INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version)"
            " VALUES (?, ?, ?, ?, ?)",
            (event_id, room_id, "{}", json.dumps(event), 3),
        )
        if membership is not None:
            assert state_key is not None
            self._txn.execute(
                "INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership,"
                " event_stream_ordering) VALUES (?, ?, ?, ?, ?, ?)",
                (event_id, state_key, sender, room_id, membership, stream),
            )
        if rejected:
            self._txn.execute(
                "INSERT INTO rejections (event_id, reason, last_check) VALUES (?, ?, ?)",
                (event_id, "auth", "0"),
            )

    def local_membership(
        self, stream: int, event_id: str, room_id: str, user_id: str, membership: str
    ) -> None:
        """A local user's current membership, as the member event ``event_id``
        at ``stream`` (persisted by ``event``) made it."""
        self._txn.execute(
            "INSERT INTO local_current_membership"
            " (room_id, user_id, event_id, membership, event_stream_ordering)"
            " VALUES (?, ?, ?, ?, ?)",
            (room_id, user_id, event_id, membership, stream),
        )

    def device(self, user_id: str, device_id: str) -> None:
        self._txn.execute(
            "INSERT INTO devices (user_id, device_id) VALUES (?, ?)", (user_id, device_id)
        )

    def transaction_id(
        self, room_id: str, txn_id: str, event_id: str, user_id: str, device_id: str
    ) -> None:
        """What Synapse keeps of a client's transaction ID (for a day)."""
        self._txn.execute(
            "INSERT INTO event_txn_id_device_id"
            " (event_id, room_id, user_id, device_id, txn_id, inserted_ts)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, room_id, user_id, device_id, txn_id, 1000),
        )


@contextmanager
def rows(path: Path) -> Iterator[SynapseRows]:
    """Rows written into Synapse's tables in one committed transaction."""
    with transaction(path) as txn:
        yield SynapseRows(txn)
