"""Expanding pointers for clients: the original, or a placeholder.

Synapse calls ``unsigned_for`` for every event it serves to any client, so
the first lines are the whole cost for everything that is not a pointer. The
callback does not know who is asking: it expands only pointers that the
connection itself vouches for (sent by the connection's ferry while both
admins consented to sharing with the other room), and checks that the
original really is the event the pointer claims.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

import attrs
from synapse.module_api import EventBase, ModuleApi, Requester, SynapseRequest

from synapse_room_connect import metrics, synapse_compat
from synapse_room_connect.constants import ORIGINAL_KEY, POINTER_KEY
from synapse_room_connect.core.ghosts import GhostNamespace
from synapse_room_connect.core.handshake import Status
from synapse_room_connect.core.matrix import unfreeze
from synapse_room_connect.store import SourceEvent, Store

logger = logging.getLogger(__name__)

CACHE_SIZE: Final = 10_000


# (the latest edit's event ID, redacted): what can change about an original.
_Version = tuple[str | None, bool]


@attrs.frozen
class _CachedOriginal:
    version: _Version
    body: dict[str, Any]


@attrs.frozen
class PointerRef:
    room_id: str
    event_id: str
    sender: str


def pointer_ref_of(event: EventBase) -> PointerRef | None:
    """The original a well-formed pointer names, or None."""
    ref = event.content.get(POINTER_KEY)
    if not isinstance(ref, Mapping):
        return None
    room_id, event_id, sender = ref.get("room_id"), ref.get("event_id"), ref.get("sender")
    if not (isinstance(room_id, str) and isinstance(event_id, str) and isinstance(sender, str)):
        return None
    return PointerRef(room_id, event_id, sender)


class Expander:
    def __init__(
        self,
        api: ModuleApi,
        store: Store,
        state_types: frozenset[str] = frozenset(),
        ghosts: GhostNamespace | None = None,
    ) -> None:
        self._api = api
        self._store = store
        self._state_types = state_types
        self._ghosts = ghosts
        # original event ID -> (its version, its client form). A version is
        # (latest edit, redacted), read from Synapse's own caches on every
        # serve: Synapse invalidates those before it tells anyone of an edit
        # or redaction, on every worker, so a served expansion is never
        # staler than the event itself.
        self._originals: OrderedDict[str, _CachedOriginal] = OrderedDict()
        # pointer event ID -> its original, as recorded by the ferry.
        self._recorded: OrderedDict[str, SourceEvent] = OrderedDict()

    async def unsigned_for(self, event: EventBase) -> dict[str, Any]:
        if event.type != "m.room.message" or POINTER_KEY not in event.content:
            return {}
        ref = pointer_ref_of(event)
        if ref is None:
            return {}
        if await self._vouched(event, ref):
            original = await self._original(ref)
            if original is not None:
                metrics.expansions.labels(self._api.server_name, "original").inc()
                return {ORIGINAL_KEY: original}
        metrics.expansions.labels(self._api.server_name, "placeholder").inc()
        return {ORIGINAL_KEY: await self._placeholder(event, ref)}

    async def _vouched(self, pointer: EventBase, ref: PointerRef) -> bool:
        """Whether the connection itself stands behind this pointer."""
        if ref.room_id == pointer.room_id:
            return False
        # Sent by this server's ferry: recorded only while the connection was active.
        recorded = await self._recorded_original(pointer.event_id)
        if recorded is not None:
            return recorded == SourceEvent(ref.room_id, ref.event_id)
        # Sent by another server's ferry: the connection must be active now
        # and name that sender as its ferry, or the sender be one of that
        # ferry's ghosts (its server reserves their namespace).
        row = await self._store.cached_connection(pointer.room_id, ref.room_id)
        if row is None or row.status is not Status.ACTIVE or row.ferry is None:
            return False
        if row.ferry == pointer.sender:
            return True
        return self._ghosts is not None and self._ghosts.is_ghost_of_ferry(
            pointer.sender, row.ferry
        )

    async def _recorded_original(self, pointer_id: str) -> SourceEvent | None:
        # A recorded pointer never changes what it points at, so a hit is
        # cached for good; a miss is not, as the ferry records a pointer just
        # after Synapse has served it.
        if pointer_id in self._recorded:
            self._recorded.move_to_end(pointer_id)
            return self._recorded[pointer_id]
        recorded = await self._store.original_of(pointer_id)
        if recorded is not None:
            self._recorded[pointer_id] = recorded
            if len(self._recorded) > CACHE_SIZE:
                self._recorded.popitem(last=False)
        return recorded

    async def _original(self, ref: PointerRef) -> dict[str, Any] | None:
        cached = self._originals.get(ref.event_id)
        if (
            cached is not None
            and cached.version == synapse_compat.cached_version(self._api, ref.event_id)
            # The same event may be named by another pointer with other claims.
            and (cached.body["room_id"], cached.body["sender"]) == (ref.room_id, ref.sender)
        ):
            self._originals.move_to_end(ref.event_id)
            return cached.body
        event = await synapse_compat.get_event(self._api, ref.event_id)
        if event is None or event.room_id != ref.room_id or event.sender != ref.sender:
            # A pointer naming an event that is not where it claims is forged
            # or broken: never show whatever event that ID really is.
            logger.info("Pointer names %s in %s, which does not match", ref.event_id, ref.room_id)
            return None
        if synapse_compat.is_outlier(event):
            return None
        if event.is_state() and event.type not in self._state_types:
            return None  # only state the ferry announces is shown through pointers
        redacted = synapse_compat.is_redacted(event)
        edit = None
        if not redacted:
            edits = await synapse_compat.latest_edits(self._api, [event.event_id])
            edit = edits.get(event.event_id)
        version: _Version = (edit.event_id if edit is not None else None, redacted)
        body = _client_form(event, edit)
        self._originals[event.event_id] = _CachedOriginal(version, body)
        if len(self._originals) > CACHE_SIZE:
            self._originals.popitem(last=False)
        return body

    async def _placeholder(self, pointer: EventBase, ref: PointerRef) -> dict[str, Any]:
        row = await self._store.cached_connection(pointer.room_id, ref.room_id)
        via = list(row.via) if row is not None else []
        return {"placeholder": True, "room_id": ref.room_id, "via": via}

    async def merged_messages(
        self, requester: Requester, room_id: str, request: SynapseRequest
    ) -> dict[str, Any]:
        """``/messages`` for ``room_id`` with pointers replaced by their
        originals wherever this requester may see them.

        Unlike the unsigned callback this knows the reader, so an original is
        shown when the requester could read it in its own room, or when the
        connection vouches for the pointer (both admins consented to share).
        """
        page = await synapse_compat.messages_page(self._api, requester, room_id, request)
        merged: list[dict[str, Any]] = []
        for served in page["chunk"]:
            merged.append(await self._merge_one(requester, served))
        page["chunk"] = merged
        return page

    async def _merge_one(self, requester: Requester, served: dict[str, Any]) -> dict[str, Any]:
        content = served.get("content")
        if (
            served.get("type") != "m.room.message"
            or not isinstance(content, dict)
            or POINTER_KEY not in content
        ):
            return served
        pointer = await synapse_compat.get_event(self._api, served["event_id"])
        ref = pointer_ref_of(pointer) if pointer is not None else None
        if pointer is None or ref is None:
            return served
        original = await synapse_compat.get_event(self._api, ref.event_id)
        if original is None or original.room_id != ref.room_id or original.sender != ref.sender:
            return served
        shown = await synapse_compat.serialize_if_visible(self._api, requester, original)
        if shown is None and await self._vouched(pointer, ref):
            vouched = await self._original(ref)
            if vouched is not None:
                shown = dict(vouched)
        if shown is None:
            return served  # its unsigned already carries the placeholder
        unsigned = dict(shown.get("unsigned") or {})
        unsigned[POINTER_KEY] = {"room_id": served["room_id"], "event_id": served["event_id"]}
        shown["unsigned"] = unsigned
        return shown


def _client_form(event: EventBase, edit: EventBase | None) -> dict[str, Any]:
    """The original as a client would see it: latest edit applied, or redacted."""
    body: dict[str, Any] = {
        "type": event.type,
        "sender": event.sender,
        "content": unfreeze(event.content),
        "origin_server_ts": event.origin_server_ts,
        "event_id": event.event_id,
        "room_id": event.room_id,
    }
    if synapse_compat.is_redacted(event):
        body["redacted"] = True
        return body
    if edit is not None:
        new_content = edit.content.get("m.new_content")
        if isinstance(new_content, Mapping):
            content = unfreeze(new_content)
            relates = body["content"].get("m.relates_to")
            if relates is not None:
                content["m.relates_to"] = relates  # edits never change relations
            body["content"] = content
            body["edited"] = {"event_id": edit.event_id, "origin_server_ts": edit.origin_server_ts}
    return body
