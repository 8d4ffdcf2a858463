"""Merging fanned-out copies into one timeline, for the receiving side. Pure.

Input: decrypted events (dicts as in the client-server API, each with its
``room_id``) from a room and the rooms connected to it. Output: one
``TimelineEntry`` per message, where the copies of a fanned-out message (same
sender, same fan-out id; see ``protocol``) count as one, ordered by time.

Rules:

- Copies merge only when sender, fan-out id and ``origin_room_id`` agree: a
  fan-out id is chosen by its sender, so another user reusing it never hides
  or replaces someone's message. Events without a valid tag are entries of
  their own.
- The entry shows the copy in the origin room when that copy is among the
  input, else the earliest copy. ``divergent`` says the copies' contents
  differ (apart from relations, which name per-room events): a sender can put
  different text in each room, and a client should say so rather than pick
  one silently.
- Edits (``m.replace`` with ``m.new_content``) are not entries: the latest
  edit by the entry's own sender of any copy replaces the content (the
  original's ``m.relates_to`` kept). An edit whose target is not in the input
  is dropped.
- ``reply_to`` is the key of the entry that any copy replies to, when that
  entry is in the input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from synapse_room_connect.fanout.protocol import FanoutTag, tag_of

_RELATES_TO = "m.relates_to"


@attrs.frozen
class TimelineEntry:
    key: str  # "fanout:<id>:<sender>" or "event:<event ID>"
    fanout_id: str | None
    sender: str
    origin_room_id: str
    event_id: str  # the copy shown
    room_id: str  # its room
    origin_server_ts: int
    type: str
    content: Mapping[str, Any]  # current content, edits applied
    copies: Mapping[str, str]  # room ID -> event ID, one per room
    edit_event_id: str | None = None  # the applied edit's copy in ``room_id`` if any
    reply_to: str | None = None
    divergent: bool = False


@attrs.frozen
class _Event:
    event_id: str
    room_id: str
    sender: str
    type: str
    ts: int
    content: Mapping[str, Any]
    tag: FanoutTag | None

    @property
    def order(self) -> tuple[int, str]:
        return (self.ts, self.event_id)


def _parse(raw: Mapping[str, Any]) -> _Event | None:
    event_id, room_id, sender = raw.get("event_id"), raw.get("room_id"), raw.get("sender")
    event_type, content = raw.get("type"), raw.get("content")
    ts = raw.get("origin_server_ts", 0)
    if not (
        isinstance(event_id, str)
        and isinstance(room_id, str)
        and isinstance(sender, str)
        and isinstance(event_type, str)
        and isinstance(content, Mapping)
        and isinstance(ts, int)
    ):
        return None
    return _Event(event_id, room_id, sender, event_type, ts, content, tag_of(content))


def _relation(content: Mapping[str, Any]) -> Mapping[str, Any]:
    relates = content.get(_RELATES_TO)
    return relates if isinstance(relates, Mapping) else {}


def _edit_target(event: _Event) -> str | None:
    relates = _relation(event.content)
    target = relates.get("event_id")
    if (
        event.type == "m.room.message"
        and relates.get("rel_type") == "m.replace"
        and isinstance(target, str)
        and isinstance(event.content.get("m.new_content"), Mapping)
    ):
        return target
    return None


def _reply_target(content: Mapping[str, Any]) -> str | None:
    reply = _relation(content).get("m.in_reply_to")
    target = reply.get("event_id") if isinstance(reply, Mapping) else None
    return target if isinstance(target, str) else None


def _key(event: _Event) -> str:
    if event.tag is None:
        return f"event:{event.event_id}"
    return f"fanout:{event.tag.id}:{event.sender}"


def _without_relation(content: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in content.items() if k != _RELATES_TO}


def merge_timeline(events: Iterable[Mapping[str, Any]]) -> list[TimelineEntry]:
    """One entry per message across connected rooms; see the module docstring."""
    seen: set[str] = set()
    messages: dict[str, list[_Event]] = {}
    edits: list[_Event] = []
    for raw in events:
        event = _parse(raw)
        if event is None or event.event_id in seen:
            continue
        seen.add(event.event_id)
        if _edit_target(event) is not None:
            edits.append(event)
        else:
            messages.setdefault(_key(event), []).append(event)

    # Group copies; a copy whose origin disagrees with the group's first copy
    # is its own entry (same sender and id, but not the same message).
    groups: dict[str, list[_Event]] = {}
    for key, copies in messages.items():
        copies.sort(key=lambda e: e.order)
        first_tag = copies[0].tag
        for copy in copies:
            if first_tag is None or copy.tag == first_tag:
                groups.setdefault(key, []).append(copy)
            else:
                groups[f"event:{copy.event_id}"] = [copy]

    # Event ID -> (room ID, entry key). Relations only count within one room.
    owner: dict[str, tuple[str, str]] = {}
    for key, copies in groups.items():
        for copy in copies:
            owner[copy.event_id] = (copy.room_id, key)

    def entry_of(target: str | None, room_id: str) -> str | None:
        found = owner.get(target or "")
        return found[1] if found is not None and found[0] == room_id else None

    # Valid edits per entry, the copies of one edit grouped by its key; the
    # edit whose first copy is latest wins.
    edit_groups: dict[str, dict[str, list[_Event]]] = {}
    for edit in sorted(edits, key=lambda e: e.order):
        target = entry_of(_edit_target(edit), edit.room_id)
        if target is None or groups[target][0].sender != edit.sender:
            continue
        edit_groups.setdefault(target, {}).setdefault(_key(edit), []).append(edit)
    latest = {
        target: max(by_key.values(), key=lambda copies: copies[0].order)
        for target, by_key in edit_groups.items()
    }

    entries: list[TimelineEntry] = []
    for key, copies in groups.items():
        first = copies[0]
        origin = first.tag.origin_room_id if first.tag is not None else first.room_id
        shown = next((c for c in copies if c.room_id == origin), first)
        per_room: dict[str, str] = {}
        for copy in copies:
            per_room.setdefault(copy.room_id, copy.event_id)
        variants = [_without_relation(c.content) for c in copies]
        content: Mapping[str, Any] = shown.content
        edit_event_id = None
        edit_copies = latest.get(key, [])
        if edit_copies:
            chosen = next((e for e in edit_copies if e.room_id == shown.room_id), edit_copies[0])
            content = dict(chosen.content["m.new_content"])
            if _RELATES_TO in shown.content:
                content[_RELATES_TO] = shown.content[_RELATES_TO]
            edit_event_id = chosen.event_id
        new_contents = [e.content["m.new_content"] for e in edit_copies]
        divergent = any(v != variants[0] for v in variants) or any(
            n != new_contents[0] for n in new_contents
        )
        reply_to = None
        for copy in [shown, *copies]:
            parent = entry_of(_reply_target(copy.content), copy.room_id)
            if parent is not None:
                reply_to = parent
                break
        entries.append(
            TimelineEntry(
                key=key,
                fanout_id=first.tag.id if first.tag is not None else None,
                sender=first.sender,
                origin_room_id=origin,
                event_id=shown.event_id,
                room_id=shown.room_id,
                origin_server_ts=shown.ts,
                type=shown.type,
                content=content,
                copies=per_room,
                edit_event_id=edit_event_id,
                reply_to=reply_to,
                divergent=divergent,
            )
        )
    entries.sort(key=lambda e: (groups[e.key][0].order, e.key))
    return entries
