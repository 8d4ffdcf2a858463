"""The reading side of the fan-out client: /sync, decryption, the events seen,
and what they tell about where each fanned-out message's copies are.

Every tagged message this client decrypts, in a sync or a look back through a
room's history, is recorded in the copy map, so a later reply or edit finds
each room's copy of its target.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from uuid import uuid4

import nio

from synapse_room_connect.fanout.errors import FanoutError, error_text
from synapse_room_connect.fanout.mapping import Copies, CopyMap
from synapse_room_connect.fanout.protocol import FANOUT_KEY, tag_of

logger = logging.getLogger(__name__)

# No lazy loading: nio must know every member of an encrypted room to share
# the room key with all of their devices.
SYNC_FILTER: Final[dict[str, Any]] = {
    "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": False}}
}

# How far back to look for a room's copy of a message we have not seen yet.
HISTORY_SCAN_LIMIT: Final = 100


def initial_sync_filter() -> dict[str, Any]:
    """``SYNC_FILTER`` made unique to this run.

    Synapse caches the answer to an initial /sync for two minutes
    (``sync_response_cache_duration``), keyed by user, device, filter and
    timeout: a second run of the client within that time would be served the
    first run's stale snapshot (missing the latest messages, members and
    encryption changes). Excluding an event type that never exists changes
    nothing but the filter, so the cache is not hit.
    """
    timeline = {
        **SYNC_FILTER["room"]["timeline"],
        "not_types": [f"{FANOUT_KEY}.nonce.{uuid4().hex}"],
    }
    return {**SYNC_FILTER, "room": {**SYNC_FILTER["room"], "timeline": timeline}}


def event_dict(room_id: str, event: Any, *, encrypted: bool) -> dict[str, Any] | None:
    """A nio event as a client-server API dict with its room, or None if unusable."""
    source = getattr(event, "source", None)
    if not isinstance(source, dict) or not isinstance(source.get("content"), dict):
        return None
    return {
        "event_id": source.get("event_id") or getattr(event, "event_id", None),
        "room_id": room_id,
        "sender": source.get("sender") or getattr(event, "sender", None),
        "origin_server_ts": source.get("origin_server_ts", 0),
        "type": source.get("type"),
        "content": source["content"],
        # Not part of the event: whether it came encrypted, and if so whether
        # nio could tie the sending device to a verified one.
        "encrypted": encrypted,
        "verified": bool(getattr(event, "verified", False)),
    }


class Reader:
    """Syncs through the nio ``client`` and keeps what it read, feeding ``copy_map``."""

    def __init__(self, client: Any, copy_map: CopyMap) -> None:
        self._nio = client
        self._map = copy_map
        # room ID -> event ID -> event dict, in arrival order
        self._events: dict[str, dict[str, dict[str, Any]]] = {}
        self._undecrypted: list[tuple[str, Any]] = []
        self._scanned: set[str] = set()
        self.synced = False

    async def sync(self, timeout_ms: int = 0) -> None:
        """One /sync (the first one is a full initial sync), then key upkeep."""
        sync_filter = SYNC_FILTER if self.synced else initial_sync_filter()
        response = await self._nio.sync(timeout=timeout_ms, sync_filter=sync_filter)
        if not isinstance(response, nio.SyncResponse):
            raise FanoutError(f"sync failed: {error_text(response)}")
        self.synced = True
        if self._nio.should_upload_keys:
            await self._nio.keys_upload()
        if self._nio.should_query_keys:
            await self._nio.keys_query()
        await self._nio.send_to_device_messages()
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                self._take(room_id, event)
        self._retry_undecrypted()
        self._map.save()

    def _take(self, room_id: str, event: Any) -> None:
        if isinstance(event, nio.MegolmEvent):
            self._undecrypted.append((room_id, event))
            return
        as_dict = event_dict(room_id, event, encrypted=bool(getattr(event, "decrypted", False)))
        if as_dict is None or not isinstance(as_dict["event_id"], str):
            return
        self._events.setdefault(room_id, {})[as_dict["event_id"]] = as_dict
        tag = tag_of(as_dict["content"])
        if tag is not None and isinstance(as_dict["sender"], str):
            self._map.record(as_dict["sender"], tag, room_id, as_dict["event_id"])

    def _decrypt(self, room_id: str, event: Any) -> Any | None:
        event.room_id = room_id
        try:
            decrypted = self._nio.decrypt_event(event)
        except nio.EncryptionError:
            return None
        return None if isinstance(decrypted, nio.BadEvent | nio.UnknownBadEvent) else decrypted

    def _retry_undecrypted(self) -> None:
        waiting, self._undecrypted = self._undecrypted, []
        for room_id, event in waiting:
            decrypted = self._decrypt(room_id, event)
            if decrypted is None:
                self._undecrypted.append((room_id, event))
            else:
                self._take(room_id, decrypted)

    def events(self, *room_ids: str) -> list[dict[str, Any]]:
        """Every event seen (decrypted where it could be) in these rooms."""
        return [e for room_id in room_ids for e in self._events.get(room_id, {}).values()]

    def undecrypted(self, room_id: str) -> list[str]:
        """Event IDs in ``room_id`` not decrypted (yet)."""
        return [str(e.event_id) for r, e in self._undecrypted if r == room_id]

    async def copies_of(self, event_id: str, room_id: str, rooms: list[str]) -> Copies | None:
        """Every known copy of the message ``event_id`` (in ``room_id``) is one of,
        looking through the history of ``rooms`` that lack a known copy."""
        copies = self._map.find(event_id)
        if copies is None:
            response = await self._nio.room_get_event(room_id, event_id)
            if not isinstance(response, nio.RoomGetEventResponse):
                raise FanoutError(f"cannot read {event_id} in {room_id}: {error_text(response)}")
            event = response.event
            if isinstance(event, nio.MegolmEvent):
                event = self._decrypt(room_id, event)
                if event is None:
                    raise FanoutError(f"cannot decrypt {event_id}: this device has no key for it")
            self._take(room_id, event)
            copies = self._map.find(event_id)
            if copies is None:
                return None  # an ordinary message, not fanned out
        for room in rooms:
            if room not in copies.events and room not in self._scanned:
                await self._scan_history(room)
        return self._map.get(copies.sender, copies.tag.id)

    async def _scan_history(self, room_id: str) -> None:
        """Decrypt the room's recent history to learn its copies of messages."""
        self._scanned.add(room_id)
        response = await self._nio.room_messages(room_id, limit=HISTORY_SCAN_LIMIT)
        if not isinstance(response, nio.RoomMessagesResponse):
            logger.warning("Cannot read history of %s: %s", room_id, error_text(response))
            return
        for event in response.chunk:
            if isinstance(event, nio.MegolmEvent):
                event = self._decrypt(room_id, event)
                if event is None:
                    continue
            self._take(room_id, event)
