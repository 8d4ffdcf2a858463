"""Building pointer events: what the ferry bot sends into a connected room.

Pure functions over plain JSON, so every rendering and relation rule is
testable without a homeserver. ``ferry.py`` feeds them events and sends what
they return.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from synapse_room_connect.config import FallbackMode
from synapse_room_connect.constants import POINTER_KEY

# MSC4144 per-message profiles, under the prefix clients implement today.
PROFILE_KEY: Final = "com.beeper.per_message_profile"

TEXT_MSGTYPES: Final = frozenset({"m.text", "m.notice", "m.emote"})
MEDIA_MSGTYPES: Final = frozenset({"m.image", "m.file", "m.audio", "m.video"})
_MEDIA_KEYS: Final = ("url", "info", "filename", "file")

# A pointer carries its text twice (body and formatted_body) and must stay
# under Synapse's 64 KiB event limit, which a long original alone can reach;
# past this many UTF-8 bytes the fallback is cut (the expansion has it all).
MAX_FALLBACK_BYTES: Final = 16_000
TRUNCATED_MARK: Final = " […]"

# Maps an event ID of the source room to the matching event ID in the target
# room, or None when the event has no counterpart there.
Mapper = Callable[[str], "str | None"]


@attrs.frozen
class Original:
    """The parts of an original event a pointer needs."""

    room_id: str
    event_id: str
    sender: str
    origin_server_ts: int
    type: str
    content: Mapping[str, Any]
    displayname: str | None = None
    avatar_url: str | None = None
    room_label: str | None = None


def pointer_ref(original: Original) -> dict[str, Any]:
    return {
        "room_id": original.room_id,
        "event_id": original.event_id,
        "sender": original.sender,
        "origin_server_ts": original.origin_server_ts,
    }


def _name(original: Original) -> str:
    return original.displayname or original.sender


def _profile(original: Original, has_fallback: bool) -> dict[str, Any]:
    profile: dict[str, Any] = {"id": original.sender, "has_fallback": has_fallback}
    if original.displayname:
        profile["displayname"] = original.displayname
    if original.avatar_url:
        profile["avatar_url"] = original.avatar_url
    return profile


def is_ferriable_message(event_type: str, content: Mapping[str, Any]) -> bool:
    if event_type == "m.sticker":
        return isinstance(content.get("url"), str)
    return event_type == "m.room.message" and isinstance(content.get("body"), str)


def render(original: Original, mode: FallbackMode) -> dict[str, Any]:
    """Pointer content (without relations) for ``original``."""
    if mode is FallbackMode.PLACEHOLDER:
        return _render_placeholder(original)
    content = dict(original.content)
    msgtype = content.get("msgtype")
    body = str(content.get("body", ""))
    name = _name(original)
    out: dict[str, Any]
    if original.type == "m.sticker":
        out = {"msgtype": "m.image", "body": body or "sticker"}
        out.update({k: content[k] for k in _MEDIA_KEYS if k in content})
        out[PROFILE_KEY] = _profile(original, has_fallback=False)
    elif msgtype in MEDIA_MSGTYPES:
        out = {"msgtype": msgtype, "body": body}
        out.update({k: content[k] for k in _MEDIA_KEYS if k in content})
        out[PROFILE_KEY] = _profile(original, has_fallback=False)
    else:
        if msgtype not in TEXT_MSGTYPES:
            msgtype = "m.text"
        html_body = (
            str(content["formatted_body"])
            if content.get("format") == "org.matrix.custom.html"
            and isinstance(content.get("formatted_body"), str)
            else _html_of_text(body)
        )
        if max(len(body.encode()), len(html_body.encode())) > MAX_FALLBACK_BYTES:
            body = _cut(body, MAX_FALLBACK_BYTES) + TRUNCATED_MARK
            html_body = _html_of_text(body)
        prefix = f"{name}: " if msgtype != "m.emote" else f"{name} "
        out = {
            "msgtype": msgtype,
            "body": prefix + body,
            "format": "org.matrix.custom.html",
            # MSC4144: clients showing the profile strip the marked fallback.
            "formatted_body": (
                f"<strong data-mx-profile-fallback>{html.escape(prefix, quote=False)}</strong>"
                + html_body
            ),
            PROFILE_KEY: _profile(original, has_fallback=True),
        }
    out[POINTER_KEY] = pointer_ref(original)
    return out


def _state_change(original: Original) -> tuple[str, str]:
    """What a state change did, with and without its content."""
    content, where = original.content, original.room_label or original.room_id
    name = _name(original)
    if original.type == "m.room.topic":
        topic = content.get("topic")
        said = f"{name} changed the topic of {where}"
        return said, f"{said} to: {topic}" if isinstance(topic, str) and topic else said
    if original.type == "m.room.name":
        new_name = content.get("name")
        said = f"{name} renamed {where}"
        return said, f"{said} to {new_name}" if isinstance(new_name, str) and new_name else said
    if original.type == "m.room.avatar":
        said = f"{name} changed the avatar of {where}"
        return said, said
    said = f"{name} changed {original.type} in {where}"
    return said, said


def render_state(original: Original, mode: FallbackMode) -> dict[str, Any]:
    """Pointer content for a state change (an admin opted its type in)."""
    without, with_content = _state_change(original)
    body = with_content if mode is FallbackMode.COPY else without
    link = f"https://matrix.to/#/{original.room_id}/{original.event_id}"
    return {
        "msgtype": "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": f'<a href="{html.escape(link)}">{html.escape(body, quote=False)}</a>',
        POINTER_KEY: pointer_ref(original),
    }


def _html_of_text(text: str) -> str:
    return html.escape(text, quote=False).replace("\n", "<br>")


def _cut(text: str, max_bytes: int) -> str:
    """A prefix of ``text`` that fits ``max_bytes`` as UTF-8 and as escaped HTML."""
    cut = text.encode()[:max_bytes].decode(errors="ignore")
    while len(_html_of_text(cut).encode()) > max_bytes:
        cut = cut[: len(cut) * 3 // 4]
    return cut


def _render_placeholder(original: Original) -> dict[str, Any]:
    where = original.room_label or original.room_id
    link = f"https://matrix.to/#/{original.room_id}/{original.event_id}"
    body = f"{_name(original)} wrote in {where}. Join that room to read it: {link}"
    return {
        "msgtype": "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": (
            f"{html.escape(_name(original), quote=False)} wrote in "
            f'<a href="{html.escape(link)}">{html.escape(where, quote=False)}</a>. '
            "Join that room to read it."
        ),
        POINTER_KEY: pointer_ref(original),
    }


def map_relation(relates_to: Mapping[str, Any], mapper: Mapper) -> dict[str, Any] | None:
    """The ``m.relates_to`` of a reply or thread message, moved to the target room.

    Relations whose events have no counterpart in the target room are dropped,
    so the pointer is at worst an unthreaded, unreplied message.
    """
    rel_type = relates_to.get("rel_type")
    reply = relates_to.get("m.in_reply_to")
    reply_to = reply.get("event_id") if isinstance(reply, Mapping) else None
    mapped_reply = mapper(reply_to) if isinstance(reply_to, str) else None
    if rel_type == "m.thread" and isinstance(relates_to.get("event_id"), str):
        root = mapper(relates_to["event_id"])
        if root is not None:
            thread: dict[str, Any] = {"rel_type": "m.thread", "event_id": root}
            thread["is_falling_back"] = bool(relates_to.get("is_falling_back", False))
            thread["m.in_reply_to"] = {"event_id": mapped_reply or root}
            return thread
    if mapped_reply is not None:
        return {"m.in_reply_to": {"event_id": mapped_reply}}
    return None


def edit_content(
    new_pointer: Mapping[str, Any], target_pointer_id: str, edit: Original
) -> dict[str, Any]:
    """An ``m.replace`` of the pointer ``target_pointer_id`` by the bot.

    The replacement content points at the original; the edit event itself
    points at the edit it carries, so edits map like any other event.
    """
    new_content = {k: v for k, v in new_pointer.items() if k != "m.relates_to"}
    content: dict[str, Any] = {
        "msgtype": new_content.get("msgtype", "m.text"),
        "body": "* " + str(new_content.get("body", "")),
        "m.new_content": new_content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target_pointer_id},
        POINTER_KEY: pointer_ref(edit),
    }
    if "formatted_body" in new_content:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = "* " + str(new_content["formatted_body"])
    return content
