"""The start-up check of Synapse's tables: the module's SQL reads columns a
release could rename, and such a release is named at start-up."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import synapse

from synapse_room_connect.synapse_compat import UnsupportedSynapseError, sql

# The columns the module's queries read, as the module lists them for its check:
# that they match a real Synapse's tables is shown by every integration test,
# since each starts Synapse with the module and so runs this check at start-up.
_TABLES = dict(sql._COLUMNS)


def _database(tables: dict[str, str]) -> Any:
    connection = sqlite3.connect(":memory:")
    for table, columns in tables.items():
        connection.execute(f"CREATE TABLE {table} ({columns})")
    return connection.cursor()


def test_the_supported_schema_passes() -> None:
    sql.require_synapse_tables(_database(_TABLES))


def test_a_missing_column_fails_naming_the_table_and_the_synapse_version() -> None:
    # A release that dropped the last column of one table.
    kept = _TABLES["event_txn_id_device_id"].rsplit(",", 1)[0]
    tables = dict(_TABLES, event_txn_id_device_id=kept)
    with pytest.raises(UnsupportedSynapseError) as raised:
        sql.require_synapse_tables(_database(tables))
    message = str(raised.value)
    assert "event_txn_id_device_id" in message
    assert f"Synapse {synapse.__version__}" in message
