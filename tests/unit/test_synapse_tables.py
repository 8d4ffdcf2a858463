"""The start-up check of Synapse's tables: the module's SQL reads columns a
release could rename, and such a release is named at start-up."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import synapse

from synapse_room_connect.synapse_compat import UnsupportedSynapseError, sql

# Just the columns the module's queries read, as 1.150.0 and 1.163.2 have them.
_TABLES = {
    "events": "event_id, room_id, type, sender, state_key, stream_ordering, outlier,"
    " origin_server_ts",
    "rejections": "event_id",
    "room_memberships": "event_id, membership",
    "event_json": "event_id, json",
    "local_current_membership": "room_id, user_id, membership",
    "event_txn_id_device_id": "room_id, txn_id, event_id, user_id, device_id",
}


def _database(tables: dict[str, str]) -> Any:
    connection = sqlite3.connect(":memory:")
    for table, columns in tables.items():
        connection.execute(f"CREATE TABLE {table} ({columns})")
    return connection.cursor()


def test_the_supported_schema_passes() -> None:
    sql.require_synapse_tables(_database(_TABLES))


def test_a_missing_column_fails_naming_the_table_and_the_synapse_version() -> None:
    tables = dict(_TABLES, event_txn_id_device_id="room_id, txn_id, event_id, user_id")
    with pytest.raises(UnsupportedSynapseError) as raised:
        sql.require_synapse_tables(_database(tables))
    message = str(raised.value)
    assert "event_txn_id_device_id" in message
    assert f"Synapse {synapse.__version__}" in message
