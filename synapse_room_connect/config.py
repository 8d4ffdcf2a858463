"""Module configuration: schema, defaults and the frozen value it parses into.

Synapse turns a ``jsonschema.ValidationError`` raised from ``parse_config`` into
a ``ConfigError`` whose path names the offending key, so validation is done
entirely through the schema and start-up fails before the homeserver listens.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

import attrs
import jsonschema

from synapse_room_connect.constants import (
    CONNECTION_EVENT_TYPE,
    DEFAULT_BOT_LOCALPART,
    DEFAULT_GHOST_LOCALPART_PREFIX,
)
from synapse_room_connect.core.ghosts import Senders
from synapse_room_connect.core.sharding import MAIN_PROCESS, FerryInstances

# Never ferried, whatever the config says: membership is per room by nature,
# and connection events are the protocol itself.
UNFERRIABLE_STATE_TYPES = ("m.room.member", CONNECTION_EVENT_TYPE)


class FallbackMode(enum.Enum):
    """How a pointer renders in clients that do not understand MSC2923."""

    COPY = "copy"
    PLACEHOLDER = "placeholder"


CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "bot_localpart": {
            "type": "string",
            # The user-ID grammar for new localparts: lower case only.
            "pattern": r"^[a-z0-9._=\-/+]{1,64}$",
            "description": "localpart of the ferry bot, e.g. room-connect",
        },
        "bot_displayname": {"type": "string", "minLength": 1, "maxLength": 256},
        "ghost_localpart_prefix": {
            "type": "string",
            # Lower-case user-ID characters; short enough to leave room for the hash.
            "pattern": r"^[a-z0-9._=\-/+]{1,32}$",
            "description": "localpart prefix reserved for ghosts, e.g. _room_connect_",
        },
        "senders": {
            "enum": [s.value for s in Senders],
            "description": "who sends counterparts unless the receiving room's consent says",
        },
        "worker": {
            "description": (
                "worker_name of the process that acts (null: the main process), or a"
                " list of them that share the ferry; the first also coordinates"
            ),
            "oneOf": [
                {"type": "null"},
                {"type": "string", "minLength": 1},
                {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"type": "string", "minLength": 1},
                },
            ],
        },
        "approve_power_level": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
        "fallback_mode": {"enum": [m.value for m in FallbackMode]},
        "ignore_users": {
            "type": "array",
            "items": {"type": "string", "format": "regex"},
            "description": "regexes of user IDs whose events are never ferried (e.g. bridge bots)",
        },
        "ferry_state_events": {
            "type": "array",
            "uniqueItems": True,
            "items": {
                "type": "string",
                "minLength": 1,
                "not": {"enum": list(UNFERRIABLE_STATE_TYPES)},
            },
            "description": "state event types announced in connected rooms, e.g. m.room.topic",
        },
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "connections_per_room": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
        },
    },
}


@attrs.frozen
class Limits:
    connections_per_room: int = 20


@attrs.frozen
class RoomConnectConfig:
    bot_localpart: str = DEFAULT_BOT_LOCALPART
    bot_displayname: str = "Room connections"
    # The processes that ferry, from the ``worker`` option; the first coordinates.
    ferry_instances: FerryInstances = attrs.field(factory=FerryInstances)
    approve_power_level: int = 100
    fallback_mode: FallbackMode = FallbackMode.COPY
    limits: Limits = Limits()
    ignore_users: tuple[re.Pattern[str], ...] = ()
    ferry_state_events: frozenset[str] = frozenset()
    ghost_localpart_prefix: str = DEFAULT_GHOST_LOCALPART_PREFIX
    senders: Senders = Senders.GHOSTS

    def is_ignored_sender(self, user_id: str) -> bool:
        return any(pattern.fullmatch(user_id) for pattern in self.ignore_users)

    @property
    def worker(self) -> str | None:
        """``worker_name`` of the coordinator; None for the main process."""
        coordinator = self.ferry_instances.coordinator
        return None if coordinator == MAIN_PROCESS else coordinator

    def is_acting_process(self, worker_name: str | None) -> bool:
        """Whether the process called ``worker_name`` reconciles, accepts
        invites and answers commands (the coordinator)."""
        return self.ferry_instances.is_coordinator(worker_name)


def parse_config(raw: Mapping[str, Any] | None) -> RoomConnectConfig:
    """Validate ``raw`` (the ``config`` block of homeserver.yaml) and freeze it.

    Raises ``jsonschema.ValidationError`` naming the bad key.
    """
    raw = dict(raw or {})
    jsonschema.validate(raw, CONFIG_SCHEMA, format_checker=jsonschema.FormatChecker())
    defaults = RoomConnectConfig()
    bot_localpart = raw.get("bot_localpart", defaults.bot_localpart)
    prefix = raw.get("ghost_localpart_prefix", defaults.ghost_localpart_prefix)
    if bot_localpart.startswith(prefix):
        # The bot would count as a ghost: its events would never be read.
        raise jsonschema.ValidationError(
            f"bot_localpart {bot_localpart!r} must not start with the ghost prefix {prefix!r}",
            path=["ghost_localpart_prefix"],
        )
    return RoomConnectConfig(
        bot_localpart=bot_localpart,
        bot_displayname=raw.get("bot_displayname", defaults.bot_displayname),
        ferry_instances=FerryInstances.from_option(raw.get("worker")),
        approve_power_level=raw.get("approve_power_level", defaults.approve_power_level),
        fallback_mode=FallbackMode(raw.get("fallback_mode", defaults.fallback_mode.value)),
        limits=Limits(**raw.get("limits", {})),
        ignore_users=tuple(re.compile(p) for p in raw.get("ignore_users", [])),
        ferry_state_events=frozenset(raw.get("ferry_state_events", [])),
        ghost_localpart_prefix=prefix,
        senders=Senders(raw.get("senders", defaults.senders.value)),
    )
