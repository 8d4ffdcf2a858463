"""The ferry: reads connected rooms' timelines and sends pointer events.

Durability comes from two facts rather than from an in-memory queue:
Synapse's ``events`` table is the record of what was persisted, and a
per-room cursor says how far the ferry has read it. Each pointer is sent with
a transaction ID derived from (original, target room), so re-reading after a
crash makes Synapse return the pointer it already stored instead of sending a
second one. The feed (``feed.py``) only wakes the loop.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from synapse.api.errors import SynapseError
from synapse.module_api import EventBase, ModuleApi
from synapse.util.frozenutils import unfreeze

from synapse_room_connect import metrics, synapse_compat
from synapse_room_connect.bot import FerryBot
from synapse_room_connect.config import RoomConnectConfig
from synapse_room_connect.constants import POINTER_KEY
from synapse_room_connect.pointers import (
    Original,
    edit_content,
    is_ferriable_message,
    map_relation,
    render,
)
from synapse_room_connect.rooms import RoomReader
from synapse_room_connect.store import Store

logger = logging.getLogger(__name__)

BATCH_SIZE: Final = 100
MAX_ATTEMPTS: Final = 5
RETRY_DELAY_MS: Final = 1000
FERRY_DEVICE_ID: Final = "MSC2923FERRY"
_FERRIED_TYPES: Final = frozenset({"m.room.message", "m.sticker", "m.reaction", "m.room.redaction"})


class _Outcome(enum.Enum):
    SENT = "sent"  # a pointer (or edit, reaction, redaction) is in the target
    SKIPPED = "skipped"  # nothing to carry, or given up on
    RETRY = "retry"  # failed; keep the cursor on it


class Ferry:
    def __init__(
        self,
        api: ModuleApi,
        config: RoomConnectConfig,
        store: Store,
        bot: FerryBot,
        reader: RoomReader,
        label: Callable[[str], Awaitable[str]],
    ) -> None:
        self._api = api
        self._config = config
        self._store = store
        self._bot = bot
        self._reader = reader
        self._label = label
        self._running = False
        self._woken = False
        # Bumped on every connection change so a pass in progress notices a
        # revocation before its next event, not at the end of its batch.
        self._generation = 0
        # Source room -> [(target, active since)]; None until (re)loaded. Only
        # this process writes connections' activation, so memory is current
        # once it has reloaded after each change.
        self._targets: dict[str, list[tuple[str, int]]] | None = None
        self.active_rooms: frozenset[str] = frozenset()
        # Rooms that may have events the ferry has not read; every room with
        # a connection after a start or a connection change.
        self._dirty: set[str] = set()
        self._all_dirty = True
        # (source, target) -> how far the ferry has read; written through to
        # the store with each pointer, and with skipped events after a batch.
        self._cursors: dict[tuple[str, str], int] = {}
        self._device_ready = False
        # (event, target) -> failed attempts so far, for events still pending.
        self._attempts: dict[tuple[str, str], int] = {}

    def connections_changed(self) -> None:
        self._generation += 1
        self._targets = None
        self._all_dirty = True
        self.wake()

    def events_in(self, room_ids: Iterable[str]) -> None:
        """New events were persisted in these rooms."""
        dirty = self.active_rooms.intersection(room_ids)
        if dirty:
            self._dirty.update(dirty)
            self.wake()

    def wake(self) -> None:
        """Make sure a pass runs after now; cheap enough for the feed."""
        self._woken = True
        if not self._running:
            self._running = True
            self._api.run_as_background_process("room_connect_ferry", self._run)

    async def _run(self) -> None:
        try:
            if not self._device_ready:
                await self._bot.ensure_registered()
                await synapse_compat.ensure_device(
                    self._api, self._bot.user_id, FERRY_DEVICE_ID, "MSC2923 ferry"
                )
                self._device_ready = True
            while True:
                self._woken = False
                progressed = await self._pass()
                # No await between this check and returning, so a wake() can
                # not slip in unnoticed.
                if not progressed and not self._woken:
                    return
        except Exception:
            logger.exception("Ferry pass failed; retrying in %d ms", RETRY_DELAY_MS)
            self._all_dirty = True
            self._retry_later()
        finally:
            self._running = False

    def _retry_later(self) -> None:
        self._api.delayed_background_call(
            RETRY_DELAY_MS, self.wake, desc="room_connect_ferry_retry"
        )

    async def _pass(self) -> bool:
        generation = self._generation
        if self._targets is None:
            self._targets = await self._store.active_targets(self._bot.user_id)
            self.active_rooms = frozenset(self._targets)
        targets = self._targets
        rooms = set(targets) if self._all_dirty else self._dirty & set(targets)
        self._all_dirty = False
        self._dirty.clear()
        upto = synapse_compat.current_stream_position(self._api)
        progressed = False
        depth = 0
        for room_id in sorted(rooms):
            for target, since in targets[room_id]:
                key = (room_id, target)
                if key not in self._cursors:
                    stored = await self._store.get_cursor(room_id, target)
                    self._cursors[key] = max(stored or since, since)
                read_from = self._cursors[key]
                rows = await self._store.events_after(
                    room_id, read_from, upto, BATCH_SIZE, exclude_sender=self._bot.user_id
                )
                depth += len(rows)
                if not rows:
                    continue
                if len(rows) == BATCH_SIZE:
                    self._dirty.add(room_id)  # more to read in the next pass
                    progressed = True
                if not await self._ferries_content(room_id, target):
                    # Encrypted: clients fan out. Skip, but do not re-read.
                    self._cursors[key] = rows[-1][0]
                    await self._store.set_cursor(room_id, target, rows[-1][0])
                    continue
                recorded = read_from
                for stream, event_id in rows:
                    if self._generation != generation:
                        await self._flush_cursor(key, recorded)
                        return True  # connections changed: re-read them first
                    outcome = await self._ferry_event(room_id, event_id, stream, target)
                    if outcome is _Outcome.RETRY:
                        # Keep the cursor on this event and try again shortly:
                        # a transient failure must not lose it.
                        await self._flush_cursor(key, recorded)
                        self._dirty.add(room_id)
                        self._retry_later()
                        return False
                    self._cursors[key] = stream
                    if outcome is _Outcome.SENT:
                        recorded = stream
                        progressed = True
                await self._flush_cursor(key, recorded)
        metrics.ferry_queue_depth.labels(self._api.server_name).set(depth)
        return progressed

    async def _flush_cursor(self, key: tuple[str, str], recorded: int) -> None:
        """Persist a cursor that moved past skipped events only; a crash
        before this just reads those events again and skips them again."""
        if self._cursors[key] > recorded:
            await self._store.set_cursor(key[0], key[1], self._cursors[key])

    async def _ferries_content(self, room_id: str, target: str) -> bool:
        """False when either room is encrypted: clients fan out instead."""
        for room in (room_id, target):
            traits = await self._reader.traits(room)
            if traits is not None and traits.encrypted:
                return False
        return True

    def _should_ferry(self, event: EventBase) -> bool:
        if event.sender == self._bot.user_id or event.type not in _FERRIED_TYPES:
            return False
        if event.is_state() or event.internal_metadata.is_soft_failed():
            return False
        if POINTER_KEY in event.content:
            return False  # another connection's pointer: never carried twice
        return not self._config.is_ignored_sender(event.sender)

    async def _ferry_event(self, room_id: str, event_id: str, stream: int, target: str) -> _Outcome:
        event = await synapse_compat.get_event(self._api, event_id)
        if event is None or not self._should_ferry(event):
            return _Outcome.SKIPPED
        key = (event_id, target)
        try:
            pointer_id = await self._ferry_to(event, target)
            if pointer_id is not None:
                await self._store.record_ferried(room_id, event_id, stream, target, pointer_id)
        except Exception as e:
            metrics.ferry_failures.labels(self._api.server_name).inc()
            attempts = self._attempts.pop(key, 0) + 1
            if attempts >= MAX_ATTEMPTS:
                # A permanent failure (e.g. the bot was kicked) must not wedge
                # the connection forever: give up on this one, loudly.
                logger.error(
                    "Giving up ferrying %s from %s into %s after %d attempts: %s",
                    event_id,
                    room_id,
                    target,
                    attempts,
                    e,
                )
                return _Outcome.SKIPPED
            self._attempts[key] = attempts
            logger.warning(
                "Failed to ferry %s from %s into %s (attempt %d of %d): %s",
                event_id,
                room_id,
                target,
                attempts,
                MAX_ATTEMPTS,
                e,
            )
            return _Outcome.RETRY
        self._attempts.pop(key, None)
        return _Outcome.SKIPPED if pointer_id is None else _Outcome.SENT

    async def _ferry_to(self, event: EventBase, target: str) -> str | None:
        content = unfreeze(event.content)
        if event.type == "m.room.redaction":
            return await self._ferry_redaction(event, target)
        relates = content.get("m.relates_to")
        relates = relates if isinstance(relates, dict) else {}
        if event.type == "m.reaction":
            return await self._ferry_reaction(event, relates, target)
        if not is_ferriable_message(event.type, content):
            return None
        if relates.get("rel_type") == "m.replace":
            return await self._ferry_edit(event, content, relates, target)
        pointer = render(await self._original(event, content), self._config.fallback_mode)
        if relates:
            referenced = [
                relates.get("event_id"),
                (relates.get("m.in_reply_to") or {}).get("event_id"),
            ]
            mapped = {
                ref: await self.map_event(ref, target) for ref in referenced if isinstance(ref, str)
            }
            relation = map_relation(relates, mapped.get)
            if relation is not None:
                pointer["m.relates_to"] = relation
        return await self._send(event, target, "m.room.message", pointer, kind="message")

    async def _ferry_edit(
        self, event: EventBase, content: dict[str, Any], relates: dict[str, Any], target: str
    ) -> str | None:
        edited = relates.get("event_id")
        new_content = content.get("m.new_content")
        if not isinstance(edited, str) or not isinstance(new_content, dict):
            return None
        # Only the bot's own pointers can be edited by the bot.
        pointer_id = await self._store.pointer_for(edited, target)
        if pointer_id is None:
            return None
        original = await synapse_compat.get_event(self._api, edited)
        if original is None or original.sender != event.sender:
            return None  # clients ignore edits by anyone but the author; so do we
        renewed = render(await self._original(original, new_content), self._config.fallback_mode)
        edit = edit_content(renewed, pointer_id, await self._original(event, content))
        return await self._send(event, target, "m.room.message", edit, kind="edit")

    async def _ferry_reaction(
        self, event: EventBase, relates: dict[str, Any], target: str
    ) -> str | None:
        if relates.get("rel_type") != "m.annotation" or not isinstance(relates.get("key"), str):
            return None
        reacted = relates.get("event_id")
        mapped = await self.map_event(reacted, target) if isinstance(reacted, str) else None
        if mapped is None:
            return None
        content = {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": mapped, "key": relates["key"]}
        }
        try:
            return await self._send(event, target, "m.reaction", content, kind="reaction")
        except SynapseError as e:
            # The bot already carries this key on that event for someone else.
            if e.errcode != "M_DUPLICATE_ANNOTATION":
                raise
            return None

    async def _ferry_redaction(self, event: EventBase, target: str) -> str | None:
        redacted = event.redacts
        pointer_id = await self._store.pointer_for(redacted, target) if redacted else None
        if pointer_id is None:
            return None
        content = {"redacts": pointer_id, "reason": "The original was redacted"}
        return await self._send(
            event, target, "m.room.redaction", content, kind="redaction", redacts=pointer_id
        )

    async def map_event(self, event_id: str, target: str) -> str | None:
        """The counterpart in ``target`` of an event of a connected room."""
        pointer = await self._store.pointer_for(event_id, target)
        if pointer is not None:
            return pointer
        source = await self._store.original_of(event_id)
        if source is None:
            return None
        source_room, source_event = source
        if source_room == target:
            return source_event
        return await self._store.pointer_for(source_event, target)

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
            room_label=await self._label(event.room_id),
        )

    async def _send(
        self,
        event: EventBase,
        target: str,
        event_type: str,
        content: dict[str, Any],
        *,
        kind: str,
        redacts: str | None = None,
    ) -> str:
        event_dict: dict[str, Any] = {
            "type": event_type,
            "room_id": target,
            "sender": self._bot.user_id,
            "content": content,
        }
        if redacts is not None:
            event_dict["redacts"] = redacts
        sent = await synapse_compat.send_idempotent(
            self._api,
            self._bot.user_id,
            FERRY_DEVICE_ID,
            event_dict,
            txn_id=f"msc2923:{event.event_id}:{target}",
        )
        metrics.ferried_events.labels(self._api.server_name, kind).inc()
        latency = (self._api.get_current_time_msec() - int(event.origin_server_ts)) / 1000
        metrics.ferry_latency.labels(self._api.server_name).observe(max(latency, 0.0))
        logger.debug("Ferried %s %s into %s as %s", kind, event.event_id, target, sent.event_id)
        return str(sent.event_id)
