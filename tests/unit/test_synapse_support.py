"""The start-up check that names the Synapse release when an internal is
missing, and warns when the release is newer than any tested."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import synapse

from synapse_room_connect import synapse_compat
from synapse_room_connect.synapse_compat import support


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


@pytest.mark.parametrize(
    ("version", "newer"),
    [
        ("1.150.0", False),
        ("1.163.2", False),
        ("1.163.9", False),
        # Run from a git checkout, Synapse appends the branch and commit.
        ("1.163.2 (b=develop,abc123)", False),
        ("1.164.0rc1", True),
        ("1.164.0", True),
        ("1.200.1", True),
        ("2.0.0", True),
        ("not a release", False),
    ],
)
def test_which_releases_are_newer_than_the_newest_tested(version: str, newer: bool) -> None:
    assert support.NEWEST_TESTED_LABEL == "1.163.x"
    assert support.newer_than_tested(version) is newer


def test_a_newer_synapse_is_warned_about_naming_both_releases(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=support.__name__):
        support.warn_if_newer_than_tested("1.164.0")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "Synapse 1.164.0" in record.getMessage()
    assert "(1.163.x)" in record.getMessage()


def test_a_tested_synapse_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=support.__name__):
        support.warn_if_newer_than_tested("1.163.2")
        support.warn_if_newer_than_tested("1.150.0")
    assert caplog.records == []


def test_the_start_up_check_warns_once_exactly_when_this_synapse_is_newer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api: Any = SimpleNamespace(_store=StoreWithEverything())
    with caplog.at_level(logging.WARNING, logger=support.__name__):
        synapse_compat.require_supported_synapse(api)
    warned = [r for r in caplog.records if "newer than the newest release" in r.getMessage()]
    assert len(warned) == int(support.newer_than_tested(synapse.__version__))
