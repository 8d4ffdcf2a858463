"""Plain, mutable copies of an event's frozen JSON.

Synapse hands modules event content as immutable mappings and tuples; what the
module edits or serialises again needs ordinary dicts and lists. Our own
helper rather than Synapse's: its ``frozenutils`` is not part of the module API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def unfreeze(value: Any) -> Any:
    """``value`` with every mapping made a dict and every list or tuple a list,
    at any depth; strings, bytes, numbers and None as they are."""
    if isinstance(value, Mapping):
        return {key: unfreeze(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [unfreeze(item) for item in value]
    return value
