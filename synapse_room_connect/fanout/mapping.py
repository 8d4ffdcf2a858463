"""Which event carries each fanned-out message in each room, persisted as JSON.

The file (``fanout-map.json`` in the client's store directory) looks like::

    {"version": 1, "senders": {"@alice:hs": {"<fan-out id>": {
        "origin_room_id": "!A:hs", "copies": {"!A:hs": "$a", "!B:hs": "$b"}}}}}

Keyed by sender first: a fan-out id only means something together with the
user who sent it (anyone can put any id in their own messages), so another
user's copies never join ours. No network access here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from synapse_room_connect.fanout.protocol import FanoutTag

FORMAT_VERSION: Final = 1
# Messages remembered per sender; the oldest are forgotten first. Replies and
# edits to older messages then reach only the room whose event was named.
MAX_MESSAGES_PER_SENDER: Final = 10_000


@attrs.frozen
class Copies:
    """One fanned-out message: who sent it, its tag, and its event per room."""

    sender: str
    tag: FanoutTag
    events: Mapping[str, str]  # room ID -> event ID


class CopyMapError(Exception):
    """The mapping file exists but cannot be used."""


class CopyMap:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        # sender -> fan-out id -> {"origin_room_id": str, "copies": {room: event}}
        self._senders: dict[str, dict[str, dict[str, Any]]] = {}
        self._by_event: dict[str, tuple[str, str]] = {}
        self._dirty = False

    @classmethod
    def load(cls, path: Path) -> CopyMap:
        mapping = cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return mapping
        except (OSError, ValueError) as exc:
            raise CopyMapError(f"cannot read {path}: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
            raise CopyMapError(f"{path} is not a version {FORMAT_VERSION} fan-out map")
        senders = raw.get("senders")
        if not isinstance(senders, dict):
            raise CopyMapError(f"{path}: 'senders' must be an object")
        for sender, messages in senders.items():
            if not isinstance(messages, dict):
                raise CopyMapError(f"{path}: entry for {sender} must be an object")
            for fid, record in messages.items():
                origin = record.get("origin_room_id") if isinstance(record, dict) else None
                copies = record.get("copies") if isinstance(record, dict) else None
                if not isinstance(origin, str) or not isinstance(copies, dict):
                    raise CopyMapError(f"{path}: bad record {fid} of {sender}")
                tag = FanoutTag(fid, origin)
                for room_id, event_id in copies.items():
                    if isinstance(room_id, str) and isinstance(event_id, str):
                        mapping.record(sender, tag, room_id, event_id)
        mapping._dirty = False
        return mapping

    def record(self, sender: str, tag: FanoutTag, room_id: str, event_id: str) -> bool:
        """Remember that ``event_id`` in ``room_id`` is ``sender``'s copy of ``tag``.

        The first copy recorded for a room wins; returns False when this one
        was ignored (a different event already holds that place, or the event
        is already known as a copy of another message).
        """
        known = self._by_event.get(event_id)
        if known is not None:
            return known == (sender, tag.id)
        messages = self._senders.setdefault(sender, {})
        entry = messages.get(tag.id)
        if entry is None:
            entry = {"origin_room_id": tag.origin_room_id, "copies": {}}
            messages[tag.id] = entry
            self._prune(sender)
        copies: dict[str, str] = entry["copies"]
        if room_id in copies:
            return False
        copies[room_id] = event_id
        self._by_event[event_id] = (sender, tag.id)
        self._dirty = True
        return True

    def find(self, event_id: str) -> Copies | None:
        """The fanned-out message that ``event_id`` is a copy of, if known."""
        key = self._by_event.get(event_id)
        if key is None:
            return None
        return self.get(*key)

    def get(self, sender: str, fid: str) -> Copies | None:
        entry = self._senders.get(sender, {}).get(fid)
        if entry is None:
            return None
        return Copies(sender, FanoutTag(fid, entry["origin_room_id"]), dict(entry["copies"]))

    def _prune(self, sender: str) -> None:
        messages = self._senders[sender]
        while len(messages) > MAX_MESSAGES_PER_SENDER:
            oldest = next(iter(messages))  # dicts keep insertion order
            for event_id in messages.pop(oldest)["copies"].values():
                self._by_event.pop(event_id, None)

    def save(self) -> None:
        """Write the file atomically (temporary file, then rename) if anything changed."""
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"version": FORMAT_VERSION, "senders": self._senders}, indent=1)
        fd, tmp = tempfile.mkstemp(prefix=".fanout-map-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False
