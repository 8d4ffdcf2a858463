"""Events by ID, their edits and reactions, and what Synapse knows of an
event beyond its JSON (``internal_metadata``: a Python class in 1.150.0,
Rust in 1.163.2, with the same methods)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from synapse.module_api import EventBase, ModuleApi
from synapse.storage.databases.main.events_worker import EventRedactBehaviour

from synapse_room_connect.synapse_compat import sql


async def get_events(api: ModuleApi, event_ids: Iterable[str]) -> dict[str, EventBase]:
    """Fetch events by ID; unknown or rejected ones are left out.
    Checked against 1.150.0 and 1.163.2."""
    return dict(await api._store.get_events(list(event_ids)))


async def get_event(api: ModuleApi, event_id: str) -> EventBase | None:
    """One event by ID, None if unknown. Checked against 1.150.0 and 1.163.2."""
    return await api._store.get_event(event_id, allow_none=True)


def stream_ordering_of(event: EventBase) -> int | None:
    """Its position in this server's event stream, None while it has none.
    Checked against 1.150.0 and 1.163.2."""
    ordering = event.internal_metadata.stream_ordering
    return None if ordering is None else int(ordering)


def is_outlier(event: EventBase) -> bool:
    """Held only as an outlier: known to Synapse but not in the room's timeline.
    Checked against 1.150.0 and 1.163.2."""
    return bool(event.internal_metadata.is_outlier())


def is_redacted(event: EventBase) -> bool:
    """Pruned by a redaction. Checked against 1.150.0 and 1.163.2."""
    return bool(event.internal_metadata.is_redacted())


def is_soft_failed(event: EventBase) -> bool:
    """Accepted by federation but kept from clients, as a banned sender's are.
    Checked against 1.150.0 and 1.163.2."""
    return bool(event.internal_metadata.is_soft_failed())


async def unredacted(api: ModuleApi, event_id: str) -> EventBase | None:
    """An event as it was sent, even when redacted since, until Synapse
    censors it (``redaction_retention_period``, 7 days by default); None if
    unknown. Checked against 1.150.0 and 1.163.2."""
    return await api._store.get_event(
        event_id, allow_none=True, redact_behaviour=EventRedactBehaviour.as_is
    )


async def annotation_by(api: ModuleApi, event_id: str, sender: str, key: str) -> str | None:
    """The live reaction of ``sender`` to ``event_id`` with ``key``, if any:
    Synapse refuses a second one, which would fail a whole batch of sends.
    Checked against 1.150.0 and 1.163.2."""
    found = await api.run_db_interaction(
        "room_connect_annotation_by", sql.live_annotations, event_id, key, sender=sender, limit=1
    )
    return found[0][0] if found else None


async def annotators(
    api: ModuleApi, event_id: str, key: str, exclude_sender: str, limit: int = 100
) -> list[tuple[str, str]]:
    """(reaction, sender) of the live reactions to ``event_id`` with ``key``
    by anyone but ``exclude_sender``, oldest first. Checked against 1.150.0
    and 1.163.2."""
    return await api.run_db_interaction(
        "room_connect_annotators",
        sql.live_annotations,
        event_id,
        key,
        exclude_sender=exclude_sender,
        limit=limit,
    )


async def latest_edits(api: ModuleApi, event_ids: Iterable[str]) -> dict[str, EventBase]:
    """The newest valid ``m.replace`` of each event, by Synapse's own rules.
    Checked against 1.150.0 and 1.163.2."""
    store: Any = api._store
    edits = await store.get_applicable_edits(list(event_ids))
    return {event_id: edit for event_id, edit in edits.items() if edit is not None}
