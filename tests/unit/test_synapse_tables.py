"""The start-up check of Synapse's tables: the module's SQL reads columns a
release could rename, and such a release is named at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import synapse

from synapse_room_connect.synapse_compat import UnsupportedSynapseError, sql

from .synapse_db import transaction


def test_the_installed_synapse_schema_passes(synapse_db: Path) -> None:
    # The schema the installed Synapse creates itself, not one built from the
    # module's list of columns: a Synapse that renamed a column the module
    # reads fails here.
    with transaction(synapse_db) as txn:
        sql.require_synapse_tables(txn)


def _drop_column(path: Path, table: str, column: str) -> None:
    """Rebuild ``table`` without ``column``, as a release that dropped it
    would leave it (SQLite cannot drop an indexed column in place)."""
    with transaction(path) as txn:
        txn.execute(f"SELECT * FROM {table} LIMIT 0")
        columns = [d[0] for d in txn.description or ()]
        kept = [c for c in columns if c != column]
        assert len(kept) == len(columns) - 1, f"{table} has no column {column}"
        txn.execute(f"CREATE TABLE {table}_kept AS SELECT {', '.join(kept)} FROM {table}")
        txn.execute(f"DROP TABLE {table}")
        txn.execute(f"ALTER TABLE {table}_kept RENAME TO {table}")


def test_a_missing_column_fails_naming_the_table_and_the_synapse_version(
    synapse_db: Path,
) -> None:
    # A release of Synapse whose table lacks one column the module reads.
    _drop_column(synapse_db, "event_txn_id_device_id", "device_id")
    with pytest.raises(UnsupportedSynapseError) as raised, transaction(synapse_db) as txn:
        sql.require_synapse_tables(txn)
    message = str(raised.value)
    assert "event_txn_id_device_id" in message
    assert f"Synapse {synapse.__version__}" in message


def test_a_column_no_query_reads_may_go(synapse_db: Path) -> None:
    # The check is about what the queries read, not the whole table.
    _drop_column(synapse_db, "event_txn_id_device_id", "inserted_ts")
    with transaction(synapse_db) as txn:
        sql.require_synapse_tables(txn)
