"""``!connect`` chat commands: reading one from a message, and carrying it out.

Parsing is pure; ``CommandRunner`` answers in the room with the bot's reply
(texts in bot/notices.py) and acts through the same actions as the REST API.
"""

from __future__ import annotations

import enum
import shlex
from typing import Any

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_room_connect import metrics
from synapse_room_connect.bot import notices
from synapse_room_connect.bot.ferry_bot import FerryBot
from synapse_room_connect.bot.notices import Misread, misread
from synapse_room_connect.bot.room_names import RoomNamer
from synapse_room_connect.connections.actions import ConnectionActions
from synapse_room_connect.constants import ACK_ENCRYPTION, ACK_VISIBILITY
from synapse_room_connect.core.handshake import Status

COMMAND_PREFIX = "!connect"

_ACK_FLAGS = {"--ack-encryption": ACK_ENCRYPTION, "--ack-visibility": ACK_VISIBILITY}


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


class CommandOutcome(enum.Enum):
    OK = "ok"
    REFUSED = "refused"
    INVALID = "invalid"
    REMOTE_SENDER = "remote_sender"


@attrs.frozen
class Reply:
    text: str
    outcome: CommandOutcome
    # The verb's name, or "unknown" when the command could not be read.
    verb: str


def is_command(body: object) -> bool:
    return isinstance(body, str) and (
        body == COMMAND_PREFIX or body.startswith(COMMAND_PREFIX + " ")
    )


def parse_command(body: str) -> Command:
    try:
        words = shlex.split(body)
    except ValueError as e:
        raise CommandError(misread(Misread.UNREADABLE, str(e))) from None
    args = words[1:]
    if not args:
        return Command(Verb.HELP)
    try:
        verb = Verb(args[0].lower())
    except ValueError:
        raise CommandError(misread(Misread.UNKNOWN_COMMAND, args[0])) from None
    rest = args[1:]
    if verb in (Verb.LIST, Verb.HELP):
        if rest:
            raise CommandError(misread(Misread.NO_ARGUMENTS, verb.value))
        return Command(verb)
    flags = [w for w in rest if w.startswith("--")]
    positional = [w for w in rest if not w.startswith("--")]
    if len(positional) != 1:
        raise CommandError(misread(Misread.USAGE, verb.value))
    room = positional[0]
    if not room.startswith(("#", "!")):
        raise CommandError(misread(Misread.NOT_A_ROOM, room))
    acks: set[str] = set()
    for flag in flags:
        if flag not in _ACK_FLAGS or verb is Verb.REVOKE:
            raise CommandError(misread(Misread.UNKNOWN_OPTION, flag))
        acks.add(_ACK_FLAGS[flag])
    return Command(verb, room, frozenset(acks))


@attrs.define
class CommandRunner:
    """Carries out a command and answers it (acting process only)."""

    _api: ModuleApi
    _bot: FerryBot
    _actions: ConnectionActions
    _label: RoomNamer
    # approve_power_level, for the help text.
    _level: int

    async def handle(self, event: EventBase) -> None:
        room_id = event.room_id
        if await self._bot.membership(room_id) == "invite":
            await self._bot.accept_invite(room_id, event.sender)
        reply = await self._run(event)
        metrics.commands.labels(self._api.server_name, reply.verb, reply.outcome.value).inc()
        await self._bot.notice(room_id, reply.text, reply_to=event.event_id)

    async def _run(self, event: EventBase) -> Reply:
        try:
            command = parse_command(str(event.content.get("body", "")))
        except CommandError as e:
            return Reply(str(e), CommandOutcome.INVALID, "unknown")
        verb = command.verb.value
        if command.verb is Verb.HELP:
            return Reply(notices.help_text(self._level), CommandOutcome.OK, verb)
        if command.verb is Verb.LIST:
            return Reply(await self._listing(event.room_id), CommandOutcome.OK, verb)
        if not self._api.is_mine(event.sender):
            return Reply(self._remote_sender_help(command), CommandOutcome.REMOTE_SENDER, verb)
        try:
            return Reply(await self._act(event, command), CommandOutcome.OK, verb)
        except SynapseError as e:
            return Reply(notices.command_refused(verb, e.msg), CommandOutcome.REFUSED, verb)

    async def _listing(self, room_id: str) -> str:
        views = await self._actions.list_for(room_id)
        if not views:
            return notices.no_connections()
        lines = [
            notices.connection_line(
                await self._label(v.other_room_id), v.status.value, v.mode.value
            )
            for v in views
        ]
        return notices.connection_list(lines)

    async def _act(self, event: EventBase, command: Command) -> str:
        assert command.room is not None
        if command.verb is Verb.REVOKE:
            ended = await self._actions.revoke(event.sender, event.room_id, command.room)
            return notices.revoked(await self._label(ended.other_room_id))
        view = await self._actions.request(
            event.sender,
            event.room_id,
            command.room,
            acknowledge=command.acknowledge,
            require_incoming=command.verb is Verb.APPROVE,
        )
        label = await self._label(view.other_room_id)
        if view.status is Status.ACTIVE:
            return notices.connected_to(label)
        if view.blocked_by:
            return notices.consent_blocked(label, view.blocked_by)
        return notices.awaiting_approval(label)

    def _remote_sender_help(self, command: Command) -> str:
        assert command.room is not None
        content: dict[str, Any] = {}
        if command.verb is not Verb.REVOKE:
            content = {"room_id": command.room, "via": ["<server>"], "ferry": self._bot.user_id}
        return notices.remote_sender_help(self._api.server_name, command.room, content)
