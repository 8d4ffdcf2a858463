"""Matrix identifiers, as the rules need them."""

from __future__ import annotations


def server_of(user_or_room_id: str) -> str | None:
    """The server part of a user or room ID, or None if it has none."""
    _, sep, server = user_or_room_id.partition(":")
    return server if sep else None
