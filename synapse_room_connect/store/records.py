"""The store's records of Synapse's events: what the module reads of them,
whatever tables they come from."""

from __future__ import annotations

import attrs


@attrs.frozen
class NewEvent:
    """A newly persisted timeline event, as much of it as the module decides on."""

    stream: int
    event_id: str
    room_id: str
    type: str
    sender: str
    state_key: str | None = None
    membership: str | None = None


@attrs.frozen
class TimelineRow:
    """One event of a room's timeline at its stream position."""

    stream: int
    event_id: str


@attrs.frozen
class PointerTally:
    """Pointers carried from one room into another, and when the last was sent."""

    source_room_id: str
    target_room_id: str
    count: int
    last_ts: int | None
