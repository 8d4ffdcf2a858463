"""Every text the ferry bot says in a room, and the refusals that name acknowledgements.

Pure: plain values in, strings out, so wording is changed (and tested) here
alone, without a homeserver. Commands in a text are marked `like this`;
``bot/notice_format.py`` turns a text into the notice's plain body, without
the marks, and its HTML, with them as ``<code>``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence

from synapse_room_connect.constants import (
    ACK_ENCRYPTION,
    ACK_VISIBILITY,
    CONNECTION_EVENT_TYPE,
    HTTP_ROOT,
)
from synapse_room_connect.core.handshake import Mode

ACK_REASONS = {
    ACK_ENCRYPTION: "one room is end-to-end encrypted and the other is not",
    ACK_VISIBILITY: "one room is public or world-readable and the other is not",
}

_HELP_TEXT = """\
Room connections (MSC2923) share one conversation between rooms.
  `!connect request <#alias or !room_id> [--ack-encryption] [--ack-visibility]`
      ask to connect this room to another; active once an admin there approves
  `!connect approve <#alias or !room_id> [--ack-encryption] [--ack-visibility]`
      accept a request another room made to this one
  `!connect revoke <#alias or !room_id>`
      end a connection (either side may, at any time)
  `!connect list`
      show this room's connections and their status
  `!connect help`
      this text
request, approve and revoke need power level {level} in this room.
The `--ack` flags allow connecting an encrypted room to an unencrypted one, or a
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
        + ". It resumes once both rooms acknowledge this (`--ack-encryption` / "
        "`--ack-visibility`, or acknowledge in the connection state event)."
    )


def _blocked_suffix(blocked_by: Sequence[str]) -> str:
    if not blocked_by:
        return ""
    return " Blocked until both rooms acknowledge: " + _reasons(blocked_by, ", ") + "."


def requested(label: str, this_room: str, bot_user_id: str, blocked_by: Sequence[str]) -> str:
    """``this_room``: how the other room's admins name this one in a command
    (alias, else ID)."""
    text = (
        f"Requested a connection from this room to {label}. It becomes active once "
        f"an admin there approves it with `!connect approve {this_room}`"
        f" ({bot_user_id} must be able to join that room)."
    )
    return text + _blocked_suffix(blocked_by)


class JoinRefusal(enum.Enum):
    """Why the bot could not enter the other room of a request."""

    # Invite-only, knock or restricted, and nobody invited the bot.
    NOT_INVITED = "not_invited"
    BANNED = "banned"
    # Its server did not answer, or does not know the room.
    UNREACHABLE = "unreachable"
    OTHER = "other"


def request_undeliverable(
    label: str,
    this_room: str,
    bot_user_id: str,
    refusal: JoinRefusal,
    detail: str,
    blocked_by: Sequence[str],
) -> str:
    """A request the other room cannot see yet: why, and what its admins must do."""
    approve = f"`!connect approve {this_room}`"
    head = f"Requested a connection from this room to {label}, but "
    if refusal is JoinRefusal.NOT_INVITED:
        why = (
            f"I ({bot_user_id}) cannot join {label}: it is invite-only (or private) and "
            "nobody there has invited me, so its admins cannot see this request. "
            f"An admin there must invite {bot_user_id}, then run {approve} in that room."
        )
    elif refusal is JoinRefusal.BANNED:
        why = (
            f"I ({bot_user_id}) cannot join {label}: I am banned there. An admin there "
            f"must unban and invite {bot_user_id}, then run {approve} in that room."
        )
    elif refusal is JoinRefusal.UNREACHABLE:
        why = (
            f"I ({bot_user_id}) cannot reach {label}: its server did not answer or does "
            f"not know that room ({detail}). Check the room's address (an alias, or the "
            "room ID with a server that is in the room); once it is reachable, an admin "
            f"there must invite {bot_user_id} if the room is not public, then run "
            f"{approve} in that room."
        )
    else:
        why = (
            f"I ({bot_user_id}) could not join {label} ({detail}). An admin there must "
            f"invite {bot_user_id}, then run {approve} in that room."
        )
    return head + why + _blocked_suffix(blocked_by)


def incoming(label: str, other_room: str, approve_power_level: int) -> str:
    """``other_room``: how this room's admins name the asking room in a command
    (alias, else ID)."""
    return (
        f"{label} asks to connect to this room. An admin here (power level "
        f"{approve_power_level}) can approve with `!connect approve {other_room}`."
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


# ----------------------------------------------------------------------
# Refusals of an action: the reason in "Could not <verb>: <reason>" in chat,
# and the error message over REST.


def power_too_low(threshold: int, user_id: str, power: int) -> str:
    return f"Changing this room's connections needs power level {threshold}; {user_id} has {power}."


# Enough names to find one who is around; a big room lists the rest as a count.
MAX_NAMED_HOLDERS = 5


def member_name(displayname: str | None, user_id: str) -> str:
    """A member for people: display name with user ID, since names are not unique."""
    return f"{displayname} ({user_id})" if displayname and displayname != user_id else user_id


def power_holders(threshold: int, holders: Sequence[tuple[str | None, str]]) -> str:
    """Who can act instead: ``holders`` are (display name, user ID), most powerful first."""
    if not holders:
        return f"No member of this room has power level {threshold}."
    names = ", ".join(member_name(d, u) for d, u in holders[:MAX_NAMED_HOLDERS])
    rest = len(holders) - MAX_NAMED_HOLDERS
    more = f" and {rest} more" if rest > 0 else ""
    return f"Members who have it: {names}{more}."


def bridge_routes(room_id: str, service: str, owner: str, server_name: str) -> str:
    """For a room an application service runs: the two routes that act for
    it, in one sentence a member can forward to their server admin."""
    return (
        f"Room {room_id} is run by the bridge (application service) {service}, through "
        f"its user {owner}, so its connections can be changed by the "
        f"bridge's operator with the bridge's as_token on {HTTP_ROOT}/rooms/{room_id}/"
        f"connections, or by an admin of {server_name} with {HTTP_ROOT}/admin/rooms/"
        f"{room_id}/connections (docs/msc2923.md, section 11)."
    )


def power_refused(
    threshold: int,
    user_id: str,
    power: int,
    holders: Sequence[tuple[str | None, str]],
    bridge: str | None = None,
) -> str:
    """A refusal that says who can act: ``bridge`` is ``bridge_routes``' sentence
    when an application service runs the room."""
    parts = [power_too_low(threshold, user_id, power), power_holders(threshold, holders)]
    if bridge is not None:
        parts.append(bridge)
    return " ".join(parts)


def not_joined(user_id: str, room_id: str) -> str:
    return f"{user_id} is not joined to {room_id}."


def alias_unresolved(alias: str, why: str) -> str:
    return f"Room alias {alias} could not be resolved: {why}"


def servers_needed(room_id: str) -> str:
    return f"Say which servers can reach {room_id}: pass via, or use an alias."


def self_connection() -> str:
    return "A room cannot be connected to itself."


def not_asked(other: str, server_name: str, visible: bool) -> str:
    """An approval with no request to approve; ``visible``: whether this
    server can see the other room's state at all."""
    hint = "" if visible else f" ({server_name} is not in that room and cannot see its state)"
    return f"{other} has not asked to connect to this room{hint}."


def no_connection(room: str, other: str) -> str:
    """``room``: "This room" in a room's own command, its ID elsewhere."""
    return f"{room} has no connection to {other}."


def room_was_upgraded(room: str, successor: str) -> str:
    """An action on a room that an upgrade replaced: its connections moved on."""
    return (
        f"{room} was upgraded to {successor} and has no live connections; its "
        f"connections carry on in {successor}: act on that room."
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


# ----------------------------------------------------------------------
# A homeserver admin acting for a room (admin/actions.py)


def admin_connecting(admin: str, server_name: str, member: str, label: str) -> str:
    return (
        f"{admin}, an admin of {server_name}, asked on this room's behalf "
        f"(as {member}) to connect it to {label}."
    )


def admin_revoking(admin: str, server_name: str, member: str, label: str) -> str:
    return (
        f"{admin}, an admin of {server_name}, is ending this room's connection "
        f"to {label} on its behalf (as {member})."
    )


# ----------------------------------------------------------------------
# Room upgrades


def upgraded(old_label: str, new_label: str) -> str:
    """In the other room, when a connected room was upgraded."""
    return (
        f"{old_label} was upgraded to {new_label}: the connection to the old room has "
        f"ended and carries on with {new_label}, with no new approval needed here."
    )


def reconnect_after_upgrade(
    old_label: str, new_label: str, new_room_id: str, other_room_id: str, content: dict[str, object]
) -> str:
    """In both rooms, when an upgrade could not carry the connection over by itself."""
    path = f"/_matrix/client/v3/rooms/{new_room_id}/state/{CONNECTION_EVENT_TYPE}/{other_room_id}"
    return (
        f"{old_label} was upgraded to {new_label}, but the upgrade did not carry its "
        f"connection with {other_room_id} over (the upgrader's server does not run "
        f"room connections, or the upgrader lacks the power in the new room). To reconnect, "
        f"an admin of {new_label} sends `!connect request {other_room_id}` there, or, from "
        f"any server, this state event: PUT {path} {json.dumps(content)}"
    )


def ghosts_refused(bot_user_id: str) -> str:
    """Told once to a room that would not let a ghost in (invite power, a ban,
    a server ACL, a remote server's refusal) or let it post."""
    return (
        "Messages from connected rooms usually arrive from a stand-in account for each"
        " author, but one could not join this room or may not post in it, so its"
        f" messages arrive from {bot_user_id} instead, with the author's name in front."
        f" To let the stand-ins in, give {bot_user_id} power to invite, lift the ban on"
        " the stand-in, or let members post."
    )
