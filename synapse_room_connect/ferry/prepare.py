"""Preparing one original's counterpart for one target room: a pointer for a
message or a state change, an edit of the pointer, a reaction to it, or its
redaction, with relations mapped to the target room's events."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs
from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.config import RoomConnectConfig
from synapse_room_connect.core.matrix import unfreeze
from synapse_room_connect.core.upgrades import predecessor_in
from synapse_room_connect.ferry.counterpart_mentions import CounterpartMentions
from synapse_room_connect.ferry.interfaces import (
    Counterpart,
    CounterpartKind,
    PointerLookup,
    RelationPendingError,
)
from synapse_room_connect.ferry.pointers import (
    Original,
    edit_content,
    is_ferriable_message,
    is_reply,
    map_relation,
    redaction_reason,
    render,
    render_state,
)
from synapse_room_connect.ferry.reaction_count import ReactionCount
from synapse_room_connect.store import SourceEvent


class GhostSenders(Protocol):
    """Authors' ghosts (bot/ghosts.Ghosts)."""

    def is_ghost(self, user_id: str) -> bool: ...

    async def sender_into(
        self, user_id: str, room_id: str, target: str, event_type: str = ...
    ) -> str | None: ...

    async def ready_in(self, ghost_id: str, target: str, event_type: str) -> bool: ...

    async def person_of(self, ghost_id: str) -> str | None: ...


def references(event: EventBase) -> set[str]:
    """Event IDs in the event's own room that it relates to or redacts."""
    refs = {event.redacts} if event.redacts else set()
    relates = event.content.get("m.relates_to")
    if isinstance(relates, Mapping):
        for ref in (relates.get("event_id"), (relates.get("m.in_reply_to") or {}).get("event_id")):
            if isinstance(ref, str):
                refs.add(ref)
    return refs


@attrs.frozen
class Mapped:
    """An event's counterpart in a target room, and, when the event is a
    pointer whose counterpart was looked up through it, its original."""

    counterpart: str | None
    original: SourceEvent | None = None


async def map_into(lookup: PointerLookup, event_id: str, target: str) -> Mapped:
    """The counterpart in ``target`` of an event of a connected room: its
    pointer there, or, for a pointer, its original or the original's pointer."""
    pointer = await lookup.pointer_for(event_id, target)
    if pointer is not None:
        return Mapped(pointer)
    source = await lookup.original_of(event_id)
    if source is None:
        return Mapped(None)
    if source.room_id == target:
        return Mapped(source.event_id, source)
    return Mapped(await lookup.pointer_for(source.event_id, target), source)


async def counterpart_of(lookup: PointerLookup, event_id: str, target: str) -> str | None:
    return (await map_into(lookup, event_id, target)).counterpart


@attrs.define
class CounterpartPreparer:
    _api: ModuleApi
    _config: RoomConnectConfig
    _lookup: PointerLookup
    _bot_user_id: str
    _address: Callable[[str], Awaitable[str]]
    # Each author's ghost, where the target room has them send.
    _ghosts: GhostSenders | None = attrs.field(default=None, kw_only=True)
    _reactions: ReactionCount = attrs.field(init=False)
    _mentions: CounterpartMentions = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._mentions = CounterpartMentions(self._api, self._ghosts)
        self._reactions = ReactionCount(
            self._api,
            self._bot_user_id,
            functools.partial(counterpart_of, self._lookup),
            self._is_ghost,
        )

    async def prepare(
        self,
        event: EventBase,
        target: str,
        *,
        wait_for_relations: bool = True,
        by_ghost: bool = False,
    ) -> Counterpart | None:
        counterpart = await self._prepare(event, target, wait_for_relations, by_ghost)
        if counterpart is None or counterpart.type != "m.room.message":
            return counterpart
        return await self._mentions.with_mentions(event, counterpart, target)

    async def _prepare(
        self, event: EventBase, target: str, wait_for_relations: bool, by_ghost: bool
    ) -> Counterpart | None:
        content = unfreeze(event.content)
        if event.is_state():
            original = await self._original(event, content)
            return Counterpart(
                "m.room.message",
                render_state(original, self._config.fallback_mode),
                CounterpartKind.STATE,
            )
        if event.type == "m.room.redaction":
            return await self._redaction(event, target)
        relates = content.get("m.relates_to")
        relates = relates if isinstance(relates, dict) else {}
        if event.type == "m.reaction":
            sender = await self._ghost(event, target) if by_ghost else None
            return await self._reaction(relates, target, wait_for_relations, sender)
        if not is_ferriable_message(event.type, content):
            return None
        if relates.get("rel_type") == "m.replace":
            return await self._edit(event, content, relates, target, by_ghost)
        sender = await self._ghost(event, target) if by_ghost else None
        pointer = render(
            await self._original(event, content),
            self._config.fallback_mode,
            by_ghost=sender is not None,
        )
        if relates:
            mapped = {
                ref: await self._related(ref, target, wait_for_relations)
                for ref in references(event)
            }
            relation = map_relation(relates, mapped.get)
            if relation is not None:
                pointer["m.relates_to"] = relation
        return Counterpart("m.room.message", pointer, CounterpartKind.MESSAGE, sender=sender)

    async def _ghost(self, event: EventBase, target: str) -> str | None:
        """The author's ghost, ready in ``target``; None: the bot sends."""
        if self._ghosts is None:
            return None
        event_type = "m.reaction" if event.type == "m.reaction" else "m.room.message"
        return await self._ghosts.sender_into(event.sender, event.room_id, target, event_type)

    def _is_ghost(self, user_id: str) -> bool:
        """A user who stands for a person of another room: their reaction
        counts for nobody here."""
        return self._ghosts is not None and self._ghosts.is_ghost(user_id)

    async def _sender_of(self, counterpart_id: str) -> str | None:
        """Who sent a counterpart the ferry recorded: a ghost, or None for the
        bot. An edit or redaction of it must come from the same sender."""
        if self._ghosts is None:
            return None
        sent = await synapse_compat.get_event(self._api, counterpart_id)
        if sent is None or not self._ghosts.is_ghost(sent.sender):
            return None
        return str(sent.sender)

    async def _ready(self, sender: str | None, target: str, event_type: str) -> bool:
        """Whether ``sender`` (None: the bot) can send into ``target`` now: a
        ghost that left with an ended connection joins again."""
        if sender is None or self._ghosts is None:
            return True
        return await self._ghosts.ready_in(sender, target, event_type)

    async def _related(self, event_id: str, target: str, wait: bool) -> str | None:
        """``counterpart_of`` for a relation; with ``wait``, ``RelationPendingError``
        where the counterpart is still to come rather than None."""
        mapped = await map_into(self._lookup, event_id, target)
        if mapped.counterpart is None and wait and await self._still_coming(mapped, target):
            raise RelationPendingError(
                f"the counterpart of {event_id} in {target} is still to come"
            )
        return mapped.counterpart

    async def _still_coming(self, mapped: Mapped, target: str) -> bool:
        """A pointer here whose original's own pointer into ``target`` this
        ferry has yet to send: in a mesh of three rooms, A's message reaches
        B and C by two directions that need not move together (another ferry
        process, a retry), and a reaction in B may be read first."""
        source = mapped.original
        if source is None or source.room_id == target:
            return False
        original = await synapse_compat.get_event(self._api, source.event_id)
        stream = None if original is None else synapse_compat.stream_ordering_of(original)
        if stream is None:
            return False
        return await self._lookup.pointer_due(source.room_id, target, stream, self._bot_user_id)

    async def _edit(
        self,
        event: EventBase,
        content: dict[str, Any],
        relates: dict[str, Any],
        target: str,
        by_ghost: bool,
    ) -> Counterpart | None:
        edited = relates.get("event_id")
        new_content = content.get("m.new_content")
        if not isinstance(edited, str) or not isinstance(new_content, dict):
            return None
        # Only the bot's own pointers can be edited by the bot.
        pointer_id = await self._lookup.pointer_for(edited, target)
        if pointer_id is None:
            return await self._edit_after_upgrade(event, content, edited, target, by_ghost)
        original = await synapse_compat.get_event(self._api, edited)
        if original is None or original.sender != event.sender:
            return None  # clients ignore edits by anyone but the author; so do we
        # From whoever sent the pointer: a pointer the bot sent before ghosts
        # stays the bot's to edit, as clients accept edits only from the sender.
        sender = await self._sender_of(pointer_id)
        if not await self._ready(sender, target, "m.room.message"):
            return None  # nobody else may edit it
        renewed = render(
            await self._original(original, new_content),
            self._config.fallback_mode,
            reply=is_reply(original.content),
            by_ghost=sender is not None,
        )
        edit = edit_content(renewed, pointer_id, await self._original(event, content))
        return Counterpart("m.room.message", edit, CounterpartKind.EDIT, sender=sender)

    async def _edit_after_upgrade(
        self, event: EventBase, content: dict[str, Any], edited: str, target: str, by_ghost: bool
    ) -> Counterpart | None:
        """An edit of a message whose pointer is in the room ``target`` replaced:
        there is no pointer here to edit, so the edit crosses as a message of its
        own (its fallback text), rather than not at all."""
        create = (await self._api.get_room_state(target, [("m.room.create", "")])).get(
            ("m.room.create", "")
        )
        predecessor = None if create is None else predecessor_in(create.content)
        if predecessor is None or await self._lookup.pointer_for(edited, predecessor) is None:
            return None
        sender = await self._ghost(event, target) if by_ghost else None
        pointer = render(
            await self._original(event, content),
            self._config.fallback_mode,
            by_ghost=sender is not None,
        )
        return Counterpart("m.room.message", pointer, CounterpartKind.MESSAGE, sender=sender)

    async def _reaction(
        self, relates: dict[str, Any], target: str, wait: bool, sender: str | None
    ) -> Counterpart | None:
        if relates.get("rel_type") != "m.annotation" or not isinstance(relates.get("key"), str):
            return None
        reacted = relates.get("event_id")
        mapped = await self._related(reacted, target, wait) if isinstance(reacted, str) else None
        if mapped is None:
            return None
        content = {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": mapped, "key": relates["key"]}
        }
        key = relates["key"]
        reactor = sender or self._bot_user_id
        if await synapse_compat.annotation_by(self._api, mapped, reactor, key):
            # Synapse allows one per sender and key: a ghost's is there
            # already, or the bot carries this key for someone else.
            return None
        # The bot's, sent again after the last reactor took theirs back: each
        # reaction has a transaction ID of its own, so this one is new.
        return Counterpart("m.reaction", content, CounterpartKind.REACTION, sender=sender)

    async def _redaction(self, event: EventBase, target: str) -> Counterpart | None:
        redacted = event.redacts
        if not redacted:
            return None
        reason = redaction_reason(event.content)
        pointer_id = await self._lookup.pointer_for(redacted, target)
        # A ghost redacts its own counterpart: no power needed, and exactly
        # that person's message or reaction goes.
        sender = None if pointer_id is None else await self._sender_of(pointer_id)
        if pointer_id is not None and sender is not None:
            if not await self._ready(sender, target, "m.room.redaction"):
                return None  # its expansion shows the original redacted all the same
            return _redaction_of(pointer_id, reason, sender)
        # The bot's reaction with a key stands for everyone here who reacts
        # with it (reference counting, ferry/reaction_count.py).
        reaction = await self._reactions.reaction_of(redacted)
        if reaction is not None:
            standing = await self._reactions.withdrawn(redacted, reaction, target)
            return None if standing is None else _redaction_of(standing, reason)
        if pointer_id is None:
            return None
        return _redaction_of(pointer_id, reason)

    async def _original(self, event: EventBase, content: Mapping[str, Any]) -> Original:
        member_key = ("m.room.member", event.sender)
        state = await self._api.get_room_state(event.room_id, [member_key])
        member = state.get(member_key)
        displayname = member.content.get("displayname") if member is not None else None
        avatar = member.content.get("avatar_url") if member is not None else None
        return Original(
            room_id=event.room_id,
            event_id=event.event_id,
            sender=event.sender,
            origin_server_ts=int(event.origin_server_ts),
            type=event.type,
            content=content,
            displayname=displayname if isinstance(displayname, str) else None,
            avatar_url=avatar if isinstance(avatar, str) else None,
            room_address=await self._address(event.room_id),
        )


def _redaction_of(event_id: str, reason: str, sender: str | None = None) -> Counterpart:
    return Counterpart(
        "m.room.redaction",
        {"redacts": event_id, "reason": reason},
        CounterpartKind.REDACTION,
        redacts=event_id,
        sender=sender,
    )
