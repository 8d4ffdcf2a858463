"""Matrix data as the pure rules take it: the server in an ID, and plain
copies of an event's frozen JSON.

Synapse hands modules event content as immutable mappings and tuples; what the
module edits or serialises again needs ordinary dicts and lists. Our own
helper rather than Synapse's: its ``frozenutils`` is not part of the module API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def server_of(user_or_room_id: str) -> str | None:
    """The server part of a user or room ID, or None if it has none."""
    _, sep, server = user_or_room_id.partition(":")
    return server if sep else None


def unfreeze(value: Any) -> Any:
    """``value`` with every mapping made a dict and every list or tuple a list,
    at any depth; strings, bytes, numbers and None as they are."""
    if isinstance(value, Mapping):
        return {key: unfreeze(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [unfreeze(item) for item in value]
    return value
