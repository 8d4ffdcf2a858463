"""Fixtures of the unit tests that read or write a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .synapse_db import SqliteModuleApi, copy_schema, create_synapse_schema


@pytest.fixture(scope="session")
def synapse_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file holding the schema the installed Synapse creates; made
    once, copied for each test."""
    path = tmp_path_factory.mktemp("synapse-schema") / "homeserver.db"
    create_synapse_schema(path)
    return path


@pytest.fixture
def synapse_db(synapse_schema: Path, tmp_path: Path) -> Path:
    """A fresh SQLite file with Synapse's schema and no rows, for one test."""
    return copy_schema(synapse_schema, tmp_path / "homeserver.db")


@pytest.fixture
def db_api(synapse_db: Path) -> Iterator[SqliteModuleApi]:
    """The module API's database calls over ``synapse_db``."""
    api = SqliteModuleApi(synapse_db)
    yield api
    api.close()
