"""The fan-out tag and the message contents the reference client sends. Pure.

Every copy of a fanned-out message carries, inside its (encrypted) content::

    "org.matrix.msc2923.fanout": {"id": "<uuid4 hex>", "origin_room_id": "!A:hs"}

``id`` is the same in every copy of one message and new for every message
(an edit is a message of its own with its own ``id``); ``origin_room_id`` is
the room the sender wrote in. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

import attrs

from synapse_room_connect.constants import PREFIX

FANOUT_KEY: Final = f"{PREFIX}.fanout"

# This client uses uuid4 hex; other clients may choose their own opaque ids,
# but only from this alphabet (no ':' or spaces, so ids embed in keys safely).
_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._~-]{1,255}")
_MAX_ROOM_ID_LENGTH: Final = 255


@attrs.frozen
class FanoutTag:
    """Identity of one fanned-out message: the same in every room's copy."""

    id: str
    origin_room_id: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "origin_room_id": self.origin_room_id}


def new_tag(origin_room_id: str) -> FanoutTag:
    return FanoutTag(uuid.uuid4().hex, origin_room_id)


def tag_of(content: Mapping[str, Any]) -> FanoutTag | None:
    """The fan-out tag of a (decrypted) content, or None if it has no valid one."""
    raw = content.get(FANOUT_KEY)
    if not isinstance(raw, Mapping):
        return None
    fid, origin = raw.get("id"), raw.get("origin_room_id")
    if not isinstance(fid, str) or _ID_PATTERN.fullmatch(fid) is None:
        return None
    if (
        not isinstance(origin, str)
        or not origin.startswith("!")
        or not 1 < len(origin) <= _MAX_ROOM_ID_LENGTH
    ):
        return None
    return FanoutTag(fid, origin)


def text_content(text: str, tag: FanoutTag, *, reply_to: str | None = None) -> dict[str, Any]:
    """An ``m.text`` copy, replying to ``reply_to`` (an event in the same room) if given."""
    content: dict[str, Any] = {"msgtype": "m.text", "body": text, FANOUT_KEY: tag.to_json()}
    if reply_to is not None:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return content


def edit_content(
    text: str, tag: FanoutTag, *, target_event_id: str, target_tag: FanoutTag | None
) -> dict[str, Any]:
    """An ``m.replace`` of ``target_event_id`` (a copy in the same room).

    The edit has its own tag (its copies merge with each other); ``m.new_content``
    keeps the *target's* tag, so a client that applies the edit still knows
    which fanned-out message the new content belongs to.
    """
    new_content: dict[str, Any] = {"msgtype": "m.text", "body": text}
    if target_tag is not None:
        new_content[FANOUT_KEY] = target_tag.to_json()
    return {
        "msgtype": "m.text",
        "body": f"* {text}",
        "m.new_content": new_content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target_event_id},
        FANOUT_KEY: tag.to_json(),
    }


def transaction_id(tag: FanoutTag, room_id: str) -> str:
    """Stable per (message, room), so a retried send of one copy is stored once.

    The server stores transaction IDs in the clear, so this one must not show
    the fan-out id, which would let the server tell which encrypted events are
    copies of one message: a hash of id and room, different in every room.
    """
    digest = hashlib.sha256(f"{tag.id}\0{room_id}".encode()).hexdigest()
    return f"msc2923fanout.{digest[:32]}"
