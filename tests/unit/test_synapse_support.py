"""The start-up check that names the Synapse release when an internal is missing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import synapse

from synapse_room_connect import synapse_compat


class StoreWithEverything:
    """Answers every attribute lookup, as a store of a supported release does."""

    def __getattr__(self, name: str) -> Any:
        return object()


class StoreWithout(StoreWithEverything):
    def __init__(self, missing: str) -> None:
        self._missing = missing

    def __getattr__(self, name: str) -> Any:
        if name == self._missing:
            raise AttributeError(name)
        return super().__getattr__(name)


def test_a_store_with_every_internal_passes() -> None:
    api: Any = SimpleNamespace(_store=StoreWithEverything())
    synapse_compat.require_supported_synapse(api)


def test_a_missing_internal_fails_naming_it_and_the_synapse_version() -> None:
    api: Any = SimpleNamespace(_store=StoreWithout("_events_stream_cache"))
    with pytest.raises(synapse_compat.UnsupportedSynapseError) as raised:
        synapse_compat.require_supported_synapse(api)
    message = str(raised.value)
    assert "store._events_stream_cache" in message
    assert f"Synapse {synapse.__version__}" in message
    assert "get_events" not in message
