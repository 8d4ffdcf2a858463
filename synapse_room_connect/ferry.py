"""The ferry: reads connected rooms' timelines and sends pointer events.

Durability comes from two facts rather than from an in-memory queue:
Synapse's ``events`` table is the record of what was persisted, and a
per-room cursor says how far the ferry has read it. Each pointer is sent with
a transaction ID derived from (original, target room), so re-reading after a
crash makes Synapse return the pointer it already stored instead of sending a
second one. The feed (``feed.py``) only wakes the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs
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
    render_state,
)
from synapse_room_connect.rooms import RoomReader, server_of
from synapse_room_connect.store import ActiveTarget, FerriedPointer, Store

logger = logging.getLogger(__name__)

BATCH_SIZE: Final = 100
# Counterparts persisted together at most; Synapse persists 100 events a transaction.
MAX_BATCH: Final = 50
MAX_ATTEMPTS: Final = 5
RETRY_DELAY_MS: Final = 1000
FERRY_DEVICE_ID: Final = "MSC2923FERRY"
_FERRIED_TYPES: Final = frozenset({"m.room.message", "m.sticker", "m.reaction", "m.room.redaction"})


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
        self._targets: dict[str, list[ActiveTarget]] | None = None
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
            for active in targets[room_id]:
                target, since = active.room_id, active.since
                key = (room_id, target)
                if key not in self._cursors:
                    self._cursors[key] = await self._store.get_cursor(room_id, target) or since
                # A connection activated again starts from its new consent:
                # what was said while it was revoked stays on its side.
                read_from = max(self._cursors[key], since)
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
                    self._cursors[key] = rows[-1].stream
                    await self._store.set_cursor(room_id, target, rows[-1].stream)
                    continue
                batch = _Batch(room_id, target, recorded=read_from)
                for row in rows:
                    if self._generation != generation:
                        await self._flush(batch)
                        return True  # connections changed: re-read them first
                    if not await self._add(batch, row.stream, row.event_id):
                        # Keep the cursor on this event and try again shortly:
                        # a transient failure must not lose it.
                        self._dirty.add(room_id)
                        self._retry_later()
                        return False
                if not await self._flush(batch):
                    self._dirty.add(room_id)
                    self._retry_later()
                    return False
                progressed = progressed or batch.sent > 0
        metrics.ferry_queue_depth.labels(self._api.server_name).set(depth)
        return progressed

    async def _ferries_content(self, room_id: str, target: str) -> bool:
        """False when either room is encrypted: clients fan out instead."""
        for room in (room_id, target):
            traits = await self._reader.traits(room)
            if traits is not None and traits.encrypted:
                return False
        return True

    def _should_ferry(self, event: EventBase) -> bool:
        if event.sender == self._bot.user_id or event.internal_metadata.is_soft_failed():
            return False
        if event.is_state():
            if event.type not in self._config.ferry_state_events:
                return False
        elif event.type not in _FERRIED_TYPES:
            return False
        if POINTER_KEY in event.content:
            return False  # another connection's pointer: never carried twice
        return not self._config.is_ignored_sender(event.sender)

    async def _withheld_by(self, event: EventBase, target: str) -> str | None:
        """The target room's own moderation, which a pointer must not get
        round: a sender it has banned, or whose server its ACL denies."""
        member_key = ("m.room.member", event.sender)
        member = (await self._api.get_room_state(target, [member_key])).get(member_key)
        if member is not None and member.content.get("membership") == "ban":
            return "ban"
        server = server_of(event.sender)
        if server and await synapse_compat.server_denied(self._api, target, server):
            return "server_acl"
        return None

    async def _add(self, batch: _Batch, stream: int, event_id: str) -> bool:
        """Queue one event's counterpart in ``batch``; False means "failed,
        retry from this event later" (what came before it is recorded)."""
        event = await synapse_compat.get_event(self._api, event_id)
        if event is None or not self._should_ferry(event):
            batch.skip(stream)
            return True
        withheld = await self._withheld_by(event, batch.target)
        if withheld is not None:
            metrics.ferry_withheld.labels(self._api.server_name, withheld).inc()
            logger.info(
                "Not ferrying %s from %s into %s: %s there",
                event_id,
                event.sender,
                batch.target,
                withheld,
            )
            batch.skip(stream)
            return True
        # A relation to a pointer still in the batch: Synapse checks a relation
        # against the persisted event, so send those first.
        related = batch.items and not batch.sources.isdisjoint(_references(event))
        if related and not await self._flush(batch):
            return False
        try:
            send = await self._prepare(event, batch.target)
        except Exception as e:
            if self._failed(event, batch.target, e):
                batch.skip(stream)
                return True
            await self._flush(batch)
            return False
        if send is None or not batch.add(_Item(event, stream, send)):
            batch.skip(stream)
        elif len(batch.items) >= MAX_BATCH:
            return await self._flush(batch)
        return True

    async def _flush(self, batch: _Batch) -> bool:
        """Send and record what ``batch`` holds, and move the cursor over what
        it skipped; False means "retry from the first unrecorded event"."""
        items = batch.take()
        done = True
        if items:
            try:
                await self._send(batch, items, batch.last)
                batch.recorded = batch.last
            except Exception as e:
                done = await self._send_one_by_one(batch, items, e)
        if done and batch.last > batch.recorded:
            # Skipped events only: a crash before this just reads them again
            # and skips them again.
            await self._store.set_cursor(batch.room_id, batch.target, batch.last)
            batch.recorded = batch.last
        self._cursors[(batch.room_id, batch.target)] = batch.recorded
        return done

    async def _send_one_by_one(self, batch: _Batch, items: list[_Item], error: Exception) -> bool:
        """After a batch failed: each alone, so one bad event holds back no other."""
        if len(items) == 1:
            return self._failed(items[0].original, batch.target, error)
        logger.info("Ferrying %d events together failed (%s); one at a time", len(items), error)
        for n, item in enumerate(items):
            # Up to the next item, everything in between was skipped.
            upto = items[n + 1].stream - 1 if n + 1 < len(items) else batch.last
            try:
                await self._send(batch, [item], upto)
                batch.recorded = upto
            except Exception as e:
                if not self._failed(item.original, batch.target, e):
                    return False
        return True

    def _failed(self, event: EventBase, target: str, e: Exception) -> bool:
        """Count a failed attempt; True when it is given up on (skip it)."""
        metrics.ferry_failures.labels(self._api.server_name).inc()
        key = (event.event_id, target)
        attempts = self._attempts.pop(key, 0) + 1
        if attempts >= MAX_ATTEMPTS:
            # A permanent failure (e.g. the bot was kicked) must not wedge
            # the connection forever: give up on this one, loudly.
            logger.error(
                "Giving up ferrying %s from %s into %s after %d attempts: %s",
                event.event_id,
                event.room_id,
                target,
                attempts,
                e,
            )
            return True
        self._attempts[key] = attempts
        logger.warning(
            "Failed to ferry %s from %s into %s (attempt %d of %d): %s",
            event.event_id,
            event.room_id,
            target,
            attempts,
            MAX_ATTEMPTS,
            e,
        )
        return False

    async def _prepare(self, event: EventBase, target: str) -> _Send | None:
        content = unfreeze(event.content)
        if event.is_state():
            original = await self._original(event, content)
            return _Send(
                "m.room.message", render_state(original, self._config.fallback_mode), "state"
            )
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
            mapped = {ref: await self.map_event(ref, target) for ref in _references(event)}
            relation = map_relation(relates, mapped.get)
            if relation is not None:
                pointer["m.relates_to"] = relation
        return _Send("m.room.message", pointer, "message")

    async def _ferry_edit(
        self, event: EventBase, content: dict[str, Any], relates: dict[str, Any], target: str
    ) -> _Send | None:
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
        return _Send("m.room.message", edit, "edit")

    async def _ferry_reaction(
        self, event: EventBase, relates: dict[str, Any], target: str
    ) -> _Send | None:
        if relates.get("rel_type") != "m.annotation" or not isinstance(relates.get("key"), str):
            return None
        reacted = relates.get("event_id")
        mapped = await self.map_event(reacted, target) if isinstance(reacted, str) else None
        if mapped is None:
            return None
        content = {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": mapped, "key": relates["key"]}
        }
        if await synapse_compat.has_annotation(
            self._api, mapped, self._bot.user_id, relates["key"]
        ):
            return None  # the bot already carries this key there for someone else
        return _Send("m.reaction", content, "reaction")

    async def _ferry_redaction(self, event: EventBase, target: str) -> _Send | None:
        redacted = event.redacts
        pointer_id = await self._store.pointer_for(redacted, target) if redacted else None
        if pointer_id is None:
            return None
        content = {"redacts": pointer_id, "reason": "The original was redacted"}
        return _Send("m.room.redaction", content, "redaction", redacts=pointer_id)

    async def map_event(self, event_id: str, target: str) -> str | None:
        """The counterpart in ``target`` of an event of a connected room."""
        pointer = await self._store.pointer_for(event_id, target)
        if pointer is not None:
            return pointer
        source = await self._store.original_of(event_id)
        if source is None:
            return None
        if source.room_id == target:
            return source.event_id
        return await self._store.pointer_for(source.event_id, target)

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

    async def _send(self, batch: _Batch, items: Sequence[_Item], cursor: int) -> None:
        txn_ids = [f"msc2923:{item.original.event_id}:{batch.target}" for item in items]
        user, device = self._bot.user_id, FERRY_DEVICE_ID
        # Sent before a crash but not recorded: Synapse kept the transaction IDs.
        sent = await self._store.sent_transactions(batch.target, user, device, txn_ids)
        new = [
            (txn_id, item.send.event_dict(batch.target, user))
            for txn_id, item in zip(txn_ids, items, strict=True)
            if txn_id not in sent
        ]
        if new:
            ids = await synapse_compat.send_batch(self._api, user, device, batch.target, new)
            metrics.ferry_batch_size.labels(self._api.server_name).observe(len(new))
            sent.update(zip((txn_id for txn_id, _ in new), ids, strict=True))
        pointers = [
            FerriedPointer(item.original.event_id, sent[txn_id])
            for txn_id, item in zip(txn_ids, items, strict=True)
        ]
        await self._store.record_ferried(batch.room_id, batch.target, pointers, cursor)
        now = self._api.get_current_time_msec()
        for item, pointer in zip(items, pointers, strict=True):
            self._attempts.pop((item.original.event_id, batch.target), None)
            metrics.ferried_events.labels(self._api.server_name, item.send.kind).inc()
            latency = (now - int(item.original.origin_server_ts)) / 1000
            metrics.ferry_latency.labels(self._api.server_name).observe(max(latency, 0.0))
            logger.debug(
                "Ferried %s %s into %s as %s",
                item.send.kind,
                item.original.event_id,
                batch.target,
                pointer.pointer_event_id,
            )
        batch.sent += len(items)


def _references(event: EventBase) -> set[str]:
    """Event IDs in the event's own room that it relates to or redacts."""
    refs = {event.redacts} if event.redacts else set()
    relates = event.content.get("m.relates_to")
    if isinstance(relates, Mapping):
        for ref in (relates.get("event_id"), (relates.get("m.in_reply_to") or {}).get("event_id")):
            if isinstance(ref, str):
                refs.add(ref)
    return refs


@attrs.frozen
class _Send:
    """The counterpart to send into the target room."""

    type: str
    content: dict[str, Any]
    kind: str  # for metrics: message, edit, reaction, redaction
    redacts: str | None = None

    def event_dict(self, room_id: str, sender: str) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": self.type,
            "room_id": room_id,
            "sender": sender,
            "content": self.content,
        }
        if self.redacts is not None:
            event["redacts"] = self.redacts
        return event


@attrs.frozen
class _Item:
    original: EventBase
    stream: int
    send: _Send


@attrs.define
class _Batch:
    """Counterparts for one direction, sent together (``MAX_BATCH`` at most).

    ``last`` is the position after which nothing has been looked at yet;
    ``recorded`` how far the store's cursor is known to be.
    """

    room_id: str
    target: str
    recorded: int
    last: int = 0
    sent: int = 0
    items: list[_Item] = attrs.field(factory=list)
    sources: set[str] = attrs.field(factory=set)
    # (event, key) of the bot's reactions in the batch: Synapse allows one.
    reactions: set[tuple[str, str]] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self.last = self.recorded

    def skip(self, stream: int) -> None:
        self.last = stream

    def add(self, item: _Item) -> bool:
        """Queue ``item``; False if it would repeat a reaction already queued."""
        if item.send.type == "m.reaction":
            relates = item.send.content["m.relates_to"]
            reaction = (relates["event_id"], relates["key"])
            if reaction in self.reactions:
                return False
            self.reactions.add(reaction)
        self.items.append(item)
        self.sources.add(item.original.event_id)
        self.last = item.stream
        return True

    def take(self) -> list[_Item]:
        items, self.items = self.items, []
        self.sources.clear()
        self.reactions.clear()
        return items
