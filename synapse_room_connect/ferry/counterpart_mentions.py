"""The ``m.mentions`` a counterpart carries, read against its target room.

The rules are in ``ferry/mentions.py``, pure; this reads what they need:
the people that mentioned ghosts stand for, which of the intended people are
members of the target room, and whether the original's sender may mention
that whole room (its power levels). Kept apart from preparing the
counterpart itself, which only hands its result here last.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs
from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.ferry.interfaces import Counterpart
from synapse_room_connect.ferry.mentions import (
    MAX_USER_MENTIONS,
    MENTIONS_KEY,
    intended,
    kept,
    room_notification_level,
)


class GhostPeople(Protocol):
    """Authors' ghosts and the people they stand for (bot/ghosts.Ghosts)."""

    def is_ghost(self, user_id: str) -> bool: ...

    async def person_of(self, ghost_id: str) -> str | None: ...


@attrs.frozen
class CounterpartMentions:
    _api: ModuleApi
    # None: bot mode, nobody is a ghost.
    _ghosts: GhostPeople | None = None

    async def with_mentions(
        self, event: EventBase, counterpart: Counterpart, target: str
    ) -> Counterpart:
        """The counterpart with the mentions its original intended, of
        people in ``target``; an edit's replacement content too."""
        content = dict(counterpart.content)
        content[MENTIONS_KEY] = await self._mentions(event.sender, event.content, target)
        new_content = content.get("m.new_content")
        original_new = event.content.get("m.new_content")
        if isinstance(new_content, dict) and isinstance(original_new, Mapping):
            content["m.new_content"] = {
                **new_content,
                MENTIONS_KEY: await self._mentions(event.sender, original_new, target),
            }
        return attrs.evolve(counterpart, content=content)

    async def _mentions(
        self, sender: str, content: Mapping[str, Any], target: str
    ) -> dict[str, Any]:
        # A mention of a ghost is a mention of its person.
        people = await self._ghost_people(content)
        wanted = intended(content, people.get)
        if not wanted.anything:
            return {}  # no state read: most messages mention nobody
        keys = [("m.room.member", user_id) for user_id in wanted.user_ids]
        if wanted.room:
            keys += [("m.room.create", ""), ("m.room.power_levels", "")]
        state = await self._api.get_room_state(target, keys)
        members = {
            key[1]
            for key, member in state.items()
            if key[0] == "m.room.member" and member.content.get("membership") == "join"
        }
        may_mention_room = False
        if wanted.room:
            levels = state.get(("m.room.power_levels", ""))
            needed = room_notification_level(None if levels is None else levels.content)
            may_mention_room = synapse_compat.power_in_state(dict(state), sender) >= needed
        return kept(wanted, members, may_mention_room)

    async def _ghost_people(self, content: Mapping[str, Any]) -> dict[str, str]:
        """The people the ghosts mentioned in ``content`` speak for."""
        mentions = content.get(MENTIONS_KEY)
        user_ids = mentions.get("user_ids") if isinstance(mentions, Mapping) else None
        if self._ghosts is None or not isinstance(user_ids, (list, tuple)):
            return {}
        people = {}
        for user_id in list(user_ids)[:MAX_USER_MENTIONS]:
            if isinstance(user_id, str) and self._ghosts.is_ghost(user_id):
                person = await self._ghosts.person_of(user_id)
                if person is not None:
                    people[user_id] = person
        return people
