"""The database engine and Twisted plumbing the module's own store needs and
the module API leaves out."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from synapse.module_api import LoggingTransaction
from synapse.storage.engines import PostgresEngine
from synapse.util.async_helpers import ObservableDeferred
from twisted.internet.defer import Deferred

T = TypeVar("T")


def is_postgres(txn: LoggingTransaction) -> bool:
    """Whether the homeserver's database is PostgreSQL (else SQLite).
    Checked against 1.150.0 and 1.163.2."""
    return isinstance(txn.database_engine, PostgresEngine)


def shared(deferred: Deferred[T]) -> Callable[[], Deferred[T]]:
    """A way for any number of callers to wait for one ``deferred``: each call
    gives a new Deferred with its result or failure, before or after it fired.
    Checked against 1.150.0 and 1.163.2."""
    return ObservableDeferred(deferred, consumeErrors=True).observe
