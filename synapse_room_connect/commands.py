"""Parsing ``!connect`` chat commands. Pure: execution lives in connections.py."""

from __future__ import annotations

import enum
import shlex

import attrs

from synapse_room_connect.constants import ACK_ENCRYPTION, ACK_VISIBILITY

COMMAND_PREFIX = "!connect"

_ACK_FLAGS = {"--ack-encryption": ACK_ENCRYPTION, "--ack-visibility": ACK_VISIBILITY}

HELP_TEXT = """\
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


class Verb(enum.Enum):
    REQUEST = "request"
    APPROVE = "approve"
    REVOKE = "revoke"
    LIST = "list"
    HELP = "help"


@attrs.frozen
class Command:
    verb: Verb
    room: str | None = None
    acknowledge: frozenset[str] = frozenset()


class CommandError(ValueError):
    pass


def is_command(body: object) -> bool:
    return isinstance(body, str) and (
        body == COMMAND_PREFIX or body.startswith(COMMAND_PREFIX + " ")
    )


def parse_command(body: str) -> Command:
    try:
        words = shlex.split(body)
    except ValueError as e:
        raise CommandError(f"Could not read the command: {e}") from None
    args = words[1:]
    if not args:
        return Command(Verb.HELP)
    try:
        verb = Verb(args[0].lower())
    except ValueError:
        raise CommandError(f"Unknown command {args[0]!r}; try `!connect help`.") from None
    rest = args[1:]
    if verb in (Verb.LIST, Verb.HELP):
        if rest:
            raise CommandError(f"`!connect {verb.value}` takes no arguments.")
        return Command(verb)
    flags = [w for w in rest if w.startswith("--")]
    positional = [w for w in rest if not w.startswith("--")]
    if len(positional) != 1:
        raise CommandError(f"Usage: `!connect {verb.value} <#alias or !room_id>`.")
    room = positional[0]
    if not room.startswith(("#", "!")):
        raise CommandError(f"{room!r} is neither a room alias (#...) nor a room ID (!...).")
    acks: set[str] = set()
    for flag in flags:
        if flag not in _ACK_FLAGS or verb is Verb.REVOKE:
            raise CommandError(f"Unknown option {flag!r}; try `!connect help`.")
        acks.add(_ACK_FLAGS[flag])
    return Command(verb, room, frozenset(acks))
