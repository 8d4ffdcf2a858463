"""Pure handshake logic: what one side's state event says, and what two sides
together make of a connection.

Nothing here touches Synapse; callers hand in plain values read from room
state, so the rules can be tested exhaustively and reused by every path
(state events, chat commands, REST).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs
import jsonschema

from synapse_room_connect.constants import (
    ACK_ENCRYPTION,
    ACK_VISIBILITY,
    MAX_CONNECTION_CONTENT_BYTES,
)
from synapse_room_connect.core.ghosts import Senders

# Room version 12 room IDs carry no server name, older ones do.
_ROOM_ID_RE: Final = re.compile(r"^![^:\s]+(:\S+)?$")
_USER_ID_RE: Final = re.compile(r"^@[^:\s]+:[^\s]+$")
# Server names per the spec's grammar: hostname or IP literal, optional port.
_SERVER_NAME_RE: Final = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?$")

CONNECTION_CONTENT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["room_id", "via", "ferry"],
    "properties": {
        "room_id": {"type": "string", "maxLength": 255},
        "via": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {"type": "string", "maxLength": 255},
        },
        "ferry": {"type": "string", "maxLength": 255},
        "acknowledge": {
            "type": "array",
            "maxItems": 2,
            "uniqueItems": True,
            "items": {"enum": [ACK_ENCRYPTION, ACK_VISIBILITY]},
        },
        # Who sends what crosses into this room: each person's ghost, or the
        # bot; absent, the ferrying server's default (core/ghosts.py).
        "senders": {"enum": [s.value for s in Senders]},
    },
}


class Status(enum.Enum):
    ACTIVE = "active"
    REQUESTED = "requested"
    INCOMING = "incoming"
    REVOKED = "revoked"


class Mode(enum.Enum):
    """How messages cross an active connection."""

    # The server's ferry bot posts pointers.
    FERRY = "ferry"
    # A room is end-to-end encrypted: the server cannot read it, clients send to both.
    CLIENT_FANOUT = "client_fanout"


class ContentError(ValueError):
    """Connection content that no homeserver should accept."""


@attrs.frozen
class Consent:
    """One side's valid, non-empty connection state event."""

    room_id: str
    other_room_id: str
    via: tuple[str, ...]
    ferry: str
    acknowledge: frozenset[str]
    sender: str
    event_id: str
    # Who this room wants to send what crosses into it; None: the ferry's default.
    senders: Senders | None = None


@attrs.frozen
class Side:
    """What one room's state says about the other room.

    ``consent`` is set when the room holds a valid request by a sender with
    enough power; ``withdrawn`` when it holds an explicit ``{}`` (or any event
    that is not a valid consent), which is how a side revokes.
    """

    room_id: str
    consent: Consent | None = None
    withdrawn: bool = False
    # False when this homeserver is not in the room and cannot read its state.
    visible: bool = True


@attrs.frozen
class RoomTraits:
    """The room properties the mismatch guard compares."""

    encrypted: bool
    # Public join rule, or world-readable history.
    public: bool


@attrs.frozen
class Verdict:
    status: Status
    ferry: str | None
    # Why a mutually consented connection is still not active, if it is not.
    blocked_by: tuple[str, ...] = ()


def is_empty_content(content: Mapping[str, Any]) -> bool:
    return len(content) == 0


def validate_content(content: Mapping[str, Any], *, room_id: str, state_key: str) -> None:
    """Raise ``ContentError`` unless ``content`` is a well-formed request.

    Empty content is a withdrawal and is valid; callers check it first.
    """
    if len(json.dumps(content, separators=(",", ":")).encode()) > MAX_CONNECTION_CONTENT_BYTES:
        raise ContentError(
            f"connection content is larger than {MAX_CONNECTION_CONTENT_BYTES} bytes"
        )
    try:
        jsonschema.validate(dict(content), CONNECTION_CONTENT_SCHEMA)
    except jsonschema.ValidationError as e:
        where = ".".join(str(p) for p in e.absolute_path) or "content"
        raise ContentError(f"{where}: {e.message}") from None
    if not _ROOM_ID_RE.match(state_key):
        raise ContentError("state_key must be the ID of the other room")
    if content["room_id"] != state_key:
        raise ContentError("room_id must equal the state_key")
    if state_key == room_id:
        raise ContentError("a room cannot be connected to itself")
    if not _USER_ID_RE.match(content["ferry"]):
        raise ContentError("ferry must be a user ID")
    for server in content["via"]:
        if not _SERVER_NAME_RE.match(server):
            raise ContentError(f"via: {server!r} is not a server name")


def traits_mismatch(a: RoomTraits, b: RoomTraits) -> tuple[str, ...]:
    """The acknowledgements needed before rooms ``a`` and ``b`` may connect."""
    needed: list[str] = []
    if a.encrypted != b.encrypted:
        needed.append(ACK_ENCRYPTION)
    if a.public != b.public:
        needed.append(ACK_VISIBILITY)
    return tuple(needed)


def derive(
    here: Side,
    there: Side,
    *,
    traits_here: RoomTraits | None = None,
    traits_there: RoomTraits | None = None,
) -> Verdict:
    """The status of the connection from ``here``'s point of view."""
    mine, theirs = here.consent, there.consent
    if mine is not None and theirs is not None:
        if mine.ferry != theirs.ferry or mine.room_id == theirs.room_id:
            return Verdict(Status.REVOKED, None)
        blocked: tuple[str, ...] = ()
        if traits_here is not None and traits_there is not None:
            blocked = tuple(
                ack
                for ack in traits_mismatch(traits_here, traits_there)
                if ack not in mine.acknowledge or ack not in theirs.acknowledge
            )
        if blocked:
            return Verdict(Status.REQUESTED, mine.ferry, blocked)
        return Verdict(Status.ACTIVE, mine.ferry)
    if here.withdrawn or there.withdrawn:
        return Verdict(Status.REVOKED, None)
    if mine is not None:
        return Verdict(Status.REQUESTED, mine.ferry)
    if theirs is not None:
        return Verdict(Status.INCOMING, theirs.ferry)
    return Verdict(Status.REVOKED, None)


def mode_for(*traits: RoomTraits | None) -> Mode:
    """Fan-out as soon as either room is encrypted; unknown traits do not count."""
    if any(t is not None and t.encrypted for t in traits):
        return Mode.CLIENT_FANOUT
    return Mode.FERRY
