"""Every text the ferry bot says in a room, and the refusals that name acknowledgements.

Pure: plain values in, strings out, so wording is changed (and tested) here
alone, without a homeserver.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence

from synapse_room_connect.constants import ACK_ENCRYPTION, ACK_VISIBILITY, CONNECTION_EVENT_TYPE
from synapse_room_connect.handshake import Mode

ACK_REASONS = {
    ACK_ENCRYPTION: "one room is end-to-end encrypted and the other is not",
    ACK_VISIBILITY: "one room is public or world-readable and the other is not",
}

_HELP_TEXT = """\
Room connections (MSC2923) share one conversation between rooms.
  !connect request <#alias or !room_id> [--ack-encryption] [--ack-visibility]
      ask to connect this room to another; active once an admin there approves
  !connect approve <#alias or !room_id> [--ack-encryption] [--ack-visibility]
      accept a request another room made to this one
  !connect revoke <#alias or !room_id>
      end a connection (either side may, at any time)
  !connect list
      show this room's connections and their status
  !connect help
      this text
request, approve and revoke need power level {level} in this room.
The --ack flags allow connecting an encrypted room to an unencrypted one, or a
public room to an invite-only one; both rooms must set them."""


def _reasons(acks: Iterable[str], sep: str) -> str:
    return sep.join(ACK_REASONS[a] for a in acks)


# ----------------------------------------------------------------------
# Notices on a connection's transitions


def connected(label: str, mode: Mode) -> str:
    how = (
        "messages are shared both ways"
        if mode is Mode.FERRY
        else "the rooms are end-to-end encrypted, so clients send to both themselves"
    )
    return f"This room is now connected to {label}; {how}."


def paused(label: str, blocked_by: Sequence[str]) -> str:
    return (
        f"The connection to {label} is paused: "
        + _reasons(blocked_by, "; ")
        + ". It resumes once both rooms acknowledge this (--ack-encryption / "
        "--ack-visibility, or acknowledge in the connection state event)."
    )


def requested(label: str, room_id: str, bot_user_id: str, blocked_by: Sequence[str]) -> str:
    text = (
        f"Requested a connection from this room to {label}. It becomes active once "
        f"an admin there approves it with `!connect approve {room_id}`"
        f" ({bot_user_id} must be able to join that room)."
    )
    if blocked_by:
        text += " Blocked until both rooms acknowledge: " + _reasons(blocked_by, ", ") + "."
    return text


def incoming(label: str, other_room_id: str, approve_power_level: int) -> str:
    return (
        f"{label} asks to connect to this room. An admin here (power level "
        f"{approve_power_level}) can approve with `!connect approve {other_room_id}`."
    )


def ended(label: str) -> str:
    return f"The connection to {label} has ended; messages are no longer shared."


def mode_switched(label: str, mode: Mode) -> str:
    if mode is Mode.CLIENT_FANOUT:
        return (
            f"End-to-end encryption is now on for the connection with {label}: the server "
            "no longer copies messages; clients that support MSC2923 send to both rooms."
        )
    return f"The connection with {label} is unencrypted again: messages are shared both ways."


def mismatch_refused(missing: Sequence[str]) -> str:
    """Why a connection event is refused at send time: the rooms differ."""
    return (
        f"Refusing to connect these rooms: {_reasons(missing, '; ')}. To connect them anyway, "
        f"both rooms must include acknowledge: {json.dumps(list(missing))} in their connection "
        "content (or pass --ack-encryption / --ack-visibility to !connect)."
    )


# ----------------------------------------------------------------------
# Replies to chat commands


def help_text(approve_power_level: int) -> str:
    return _HELP_TEXT.format(level=approve_power_level)


def no_connections() -> str:
    return "This room has no connections."


def connection_list(lines: Sequence[str]) -> str:
    return "Connections of this room:\n" + "\n".join(lines)


def connection_line(label: str, status: str, mode: str) -> str:
    return f"- {label}: {status} ({mode})"


def command_refused(verb: str, reason: str) -> str:
    return f"Could not {verb}: {reason}"


def revoked(room: str) -> str:
    return f"Revoked the connection to {room}."


def connected_to(room: str) -> str:
    return f"Connected to {room}."


def consent_blocked(room: str, blocked_by: Sequence[str]) -> str:
    return (
        f"Consent recorded, but the connection to {room} stays inactive until both "
        "rooms acknowledge: " + ", ".join(blocked_by) + "."
    )


def awaiting_approval(room: str) -> str:
    return f"Requested a connection to {room}; waiting for an admin there to approve."


def remote_sender_help(server_name: str, room: str, content: dict[str, object]) -> str:
    return (
        f"I can only act for users of {server_name}. An admin on another server can "
        f"send this state event in this room instead: type {CONNECTION_EVENT_TYPE}, "
        f"state_key {room} (the room ID), content {json.dumps(content)}."
    )


class Misread(enum.Enum):
    """Ways a command's wording is wrong; each value is the reply, given one detail."""

    UNREADABLE = "Could not read the command: {}"
    UNKNOWN_COMMAND = "Unknown command {!r}; try `!connect help`."
    NO_ARGUMENTS = "`!connect {}` takes no arguments."
    USAGE = "Usage: `!connect {} <#alias or !room_id>`."
    NOT_A_ROOM = "{!r} is neither a room alias (#...) nor a room ID (!...)."
    UNKNOWN_OPTION = "Unknown option {!r}; try `!connect help`."


def misread(kind: Misread, detail: str) -> str:
    return kind.value.format(detail)
