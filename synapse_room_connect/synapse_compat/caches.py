"""Synapse's in-memory caches and stream positions: what changed since a
position, and whether an event's latest version is known without a read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synapse.module_api import ModuleApi


def add_replication_callback(api: ModuleApi, callback: Callable[[], None]) -> None:
    """Call ``callback`` (synchronously) whenever this process learns of new
    data in any stream, events included; on workers too. Checked against 1.150.0 and 1.163.2."""
    api._hs.get_notifier().add_replication_callback(callback)


def rooms_with_events_since(api: ModuleApi, position: int) -> list[str] | None:
    """Rooms with events after stream ``position``, from the in-memory cache
    /sync uses; None when the cache does not reach back that far.
    Checked against 1.150.0 and 1.163.2."""
    store: Any = api._store
    result = store._events_stream_cache.get_all_entities_changed(position)
    return list(result.entities) if result.hit else None


def rooms_with_state_changes_since(api: ModuleApi, position: int) -> list[str] | None:
    """Rooms whose current state changed after ``position``, likewise.
    Checked against 1.150.0 and 1.163.2."""
    store: Any = api._store
    result = store._curr_state_delta_stream_cache.get_all_entities_changed(position)
    return list(result.entities) if result.hit else None


def current_stream_position(api: ModuleApi) -> int:
    """The stream ordering of the newest event this process knows is persisted.
    Checked against 1.150.0 and 1.163.2."""
    return int(api._store.get_room_max_stream_ordering())


_MISSING = object()


def cached_version(api: ModuleApi, event_id: str) -> tuple[str | None, bool] | None:
    """(latest edit's ID, redacted) of an event from Synapse's in-memory
    caches alone, or None when either is not cached.

    Synapse drops both entries (on every worker) before it announces an edit
    or a redaction, so a hit is current; a miss means "ask the store".
    Checked against 1.150.0 and 1.163.2.
    """
    store: Any = api._store
    entry = store._get_event_cache.get_local((event_id,))
    if entry is None:
        return None
    if entry.redacted_event is not None:
        return (None, True)  # as the expansion sees it: a redacted event has no edit
    # Single-argument caches are keyed by the bare argument.
    edit = store.get_applicable_edit.cache.get_immediate(event_id, _MISSING)
    if edit is _MISSING:
        return None
    return (edit.event_id if edit is not None else None, False)
