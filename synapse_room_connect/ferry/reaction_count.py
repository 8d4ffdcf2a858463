"""The bot's one reaction per key, standing for everyone who reacts with it.

Where the bot sends a room's reactions across (rather than the reactors'
ghosts), Synapse allows it one reaction per event, sender and key, so that
one counterpart stands for every person in the source room who reacted with
the key. When one of them takes theirs back, the bot's goes only if they
were the last. The count is read from Synapse's live relations rather than
kept, so a reaction read late, or twice, still counts exactly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import attrs
from synapse.module_api import ModuleApi

from synapse_room_connect import synapse_compat


@attrs.frozen
class ReactionCount:
    _api: ModuleApi
    _bot_user_id: str
    # The counterpart in a target room of an event of a connected room
    # (prepare.counterpart_of).
    _counterpart_of: Callable[[str, str], Awaitable[str | None]]
    # Whether a user is an author's ghost: their reaction counts for nobody
    # here, since it stands for a person of another room.
    _is_ghost: Callable[[str], bool]

    async def reaction_of(self, event_id: str) -> tuple[str, str] | None:
        """(reacted event, key) of a person's reaction, read as it was sent:
        by the time its redaction crosses, Synapse shows it pruned. None for
        anything else, or a reaction Synapse has since censored (then its
        own counterpart, if any, is redacted as any pointer is)."""
        sent = await synapse_compat.unredacted(self._api, event_id)
        if sent is None or sent.type != "m.reaction":
            return None
        if sent.sender == self._bot_user_id or self._is_ghost(sent.sender):
            # A counterpart removed here (a moderator's choice) stands for
            # the other room's reactors, whose own reactions stay.
            return None
        relates = sent.content.get("m.relates_to")
        if not isinstance(relates, Mapping) or relates.get("rel_type") != "m.annotation":
            return None
        reacted, key = relates.get("event_id"), relates.get("key")
        if not isinstance(reacted, str) or not isinstance(key, str):
            return None
        return reacted, key

    async def withdrawn(self, redacted: str, reaction: tuple[str, str], target: str) -> str | None:
        """The bot's reaction in ``target`` to redact now that ``redacted``,
        a person's ``reaction`` (``reaction_of``), is taken back: None while
        anyone else here still reacts with its key, or if the bot has none."""
        reacted, key = reaction
        mapped = await self._counterpart_of(reacted, target)
        if mapped is None:
            return None
        standing = await synapse_compat.annotation_by(self._api, mapped, self._bot_user_id, key)
        if standing is None:
            return None
        others = await synapse_compat.annotators(self._api, reacted, key, self._bot_user_id)
        if any(event_id != redacted and not self._is_ghost(who) for event_id, who in others):
            return None
        return standing
