"""Ghost users: who they are and what they are called, as pure rules.

A ghost speaks for one person of one room in the rooms that room is
connected to, so each author shows as their own sender there. Its user ID
is derived from (person, room), so every process finds the same ghost
without asking anyone, and the namespace (a reserved localpart prefix on
this server) tells a ghost from anyone else by its ID alone.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from typing import Final

import attrs

from synapse_room_connect.core.matrix import server_of

# 80 bits: a collision needs about 2**40 ghosts on one server.
_HASH_BYTES: Final = 10
# Synapse caps a display name at 256 characters; the room part gets what is left.
MAX_DISPLAYNAME: Final = 256
_MAX_ROOM_PART: Final = 64
# The LIKE escape character for the namespace pattern: not a backslash, which
# SQLite and PostgreSQL treat differently without an ESCAPE clause.
LIKE_ESCAPE: Final = "!"


class Senders(enum.Enum):
    """Who sends the counterparts crossing into a room."""

    # Each person's ghost, as bridges show remote people.
    GHOSTS = "ghosts"
    # The ferry bot, naming the person in the text and the per-message profile.
    BOT = "bot"


@attrs.frozen
class GhostNamespace:
    """The localparts starting with ``prefix`` on ``server_name``."""

    prefix: str
    server_name: str

    def user_id_for(self, user_id: str, room_id: str) -> str:
        """The ghost of ``user_id`` as an author in ``room_id``."""
        digest = hashlib.sha256(f"{user_id}\n{room_id}".encode()).digest()[:_HASH_BYTES]
        tail = base64.b32encode(digest).decode().rstrip("=").lower()
        return f"@{self.prefix}{tail}:{self.server_name}"

    def contains(self, user_id: str) -> bool:
        """Whether ``user_id`` is in this server's ghost namespace."""
        return user_id.startswith("@" + self.prefix) and server_of(user_id) == self.server_name

    def localpart_reserved(self, localpart: str) -> bool:
        return localpart.startswith(self.prefix)

    def like_pattern(self) -> str:
        """A SQL LIKE pattern (escape ``LIKE_ESCAPE``) matching every ghost's user ID."""
        escaped = "".join(
            LIKE_ESCAPE + c if c in ("%", "_", LIKE_ESCAPE) else c for c in self.prefix
        )
        server = "".join(
            LIKE_ESCAPE + c if c in ("%", "_", LIKE_ESCAPE) else c for c in self.server_name
        )
        return f"@{escaped}%:{server}"

    def is_ghost_of_ferry(self, user_id: str, ferry: str) -> bool:
        """Whether ``user_id`` looks like a ghost of the ferry bot ``ferry``
        (another server's, maybe): on the ferry's server and in a namespace
        with this server's prefix. A server running this module reserves its
        namespace, so nobody but its ferry can send as one."""
        server = server_of(ferry)
        return (
            server is not None
            and server_of(user_id) == server
            and user_id.startswith("@" + self.prefix)
        )


def room_part(name: str | None, alias: str | None, room_id: str) -> str:
    """A room as a ghost's name shows it: its name, else its alias without
    the server, else its ID."""
    if name and name.strip():
        text = name.strip()
    elif alias:
        text = alias.partition(":")[0]
    else:
        text = room_id
    return text if len(text) <= _MAX_ROOM_PART else text[: _MAX_ROOM_PART - 1] + "…"


def ghost_displayname(person: str | None, user_id: str, room: str) -> str:
    """ "Bob (Annex)": the person's name in their room (else their user ID's
    localpart), and the room they wrote in."""
    shown = person.strip() if person and person.strip() else user_id.lstrip("@").partition(":")[0]
    suffix = f" ({room})"
    room_left = MAX_DISPLAYNAME - len(suffix)
    if len(shown) > room_left:
        shown = shown[: room_left - 1] + "…"
    return shown + suffix
