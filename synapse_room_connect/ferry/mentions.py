"""Which mentions a counterpart carries into its target room.

Every counterpart message and edit carries ``m.mentions``: with it present,
Synapse's push rules skip the legacy rules that highlight a member whose
display name is in the text, and the text of a pointer always holds its
author's name. What it holds is what the original intended, kept to people
of the target room: its own ``m.mentions.user_ids`` of members there, and
``room`` only when the original's sender could mention the whole target
room. An original without ``m.mentions`` intended no one: pills in its HTML
are not read back into mentions, since its sender's client chose not to say.

Pure: the caller reads the target room's membership and power levels.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

import attrs

MENTIONS_KEY: Final = "m.mentions"
# More user mentions than this in one event are not read: each is a state
# read in the target room, and no real message names that many people.
MAX_USER_MENTIONS: Final = 50
DEFAULT_ROOM_NOTIFICATION_LEVEL: Final = 50

# The person a ghost user stands for, or None for anyone who is not a ghost.
GhostOwner = Callable[[str], "str | None"]


def no_ghosts(user_id: str) -> str | None:
    """Bot mode: nobody is a ghost."""
    return None


@attrs.frozen
class Intended:
    """The mentions an original asked for, ghosts resolved to their people."""

    user_ids: tuple[str, ...] = ()
    room: bool = False

    @property
    def anything(self) -> bool:
        return bool(self.user_ids) or self.room


def intended(content: Mapping[str, Any], ghost_owner: GhostOwner = no_ghosts) -> Intended:
    """What ``content``'s own ``m.mentions`` asks for; malformed parts ignored.

    A mention of a ghost is a mention of the person it stands for: in the
    ghost's home room that person is a member, the ghost is not.
    """
    mentions = content.get(MENTIONS_KEY)
    if not isinstance(mentions, Mapping):
        return Intended()
    users: list[str] = []
    raw = mentions.get("user_ids")
    # A list in JSON; a tuple in an event Synapse froze.
    for user_id in raw if isinstance(raw, list | tuple) else ():
        if not _looks_like_user_id(user_id):
            continue
        person = ghost_owner(user_id) or user_id
        if person not in users:
            users.append(person)
        if len(users) == MAX_USER_MENTIONS:
            break
    return Intended(tuple(users), mentions.get("room") is True)


def _looks_like_user_id(value: object) -> bool:
    return isinstance(value, str) and value.startswith("@") and ":" in value and len(value) <= 255


def kept(wanted: Intended, members: Collection[str], may_mention_room: bool) -> dict[str, Any]:
    """The ``m.mentions`` for the target room: the wanted users who are
    ``members`` there, and the room only if ``may_mention_room``."""
    out: dict[str, Any] = {}
    users = [u for u in wanted.user_ids if u in members]
    if users:
        out["user_ids"] = users
    if wanted.room and may_mention_room:
        out["room"] = True
    return out


def room_notification_level(power_levels: Mapping[str, Any] | None) -> int:
    """The power needed for an ``@room`` mention: ``notifications.room``,
    50 when absent or malformed."""
    notifications = power_levels.get("notifications") if power_levels else None
    level = notifications.get("room") if isinstance(notifications, Mapping) else None
    if isinstance(level, bool):
        return DEFAULT_ROOM_NOTIFICATION_LEVEL
    if isinstance(level, int):
        return level
    if isinstance(level, str):
        try:
            return int(level.strip())
        except ValueError:
            return DEFAULT_ROOM_NOTIFICATION_LEVEL
    return DEFAULT_ROOM_NOTIFICATION_LEVEL
