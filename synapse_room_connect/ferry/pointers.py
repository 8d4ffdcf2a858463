"""Building pointer events: what the ferry bot sends into a connected room.

Pure functions over plain JSON, so every rendering and relation rule is
testable without a homeserver. ``ferry/prepare.py`` feeds them events and sends what
they return.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from synapse_room_connect.config import FallbackMode
from synapse_room_connect.constants import POINTER_KEY

# MSC4144 per-message profiles, under the prefix clients implement today.
PROFILE_KEY: Final = "com.beeper.per_message_profile"
# The element that holds the name's fallback (see ``_head``).
FALLBACK_ELEMENT: Final = "span"
FALLBACK_ATTRIBUTE: Final = "data-mx-profile-fallback"

TEXT_MSGTYPES: Final = frozenset({"m.text", "m.notice", "m.emote"})
MEDIA_MSGTYPES: Final = frozenset({"m.image", "m.file", "m.audio", "m.video"})
_MEDIA_KEYS: Final = ("url", "info", "filename", "file")

# A pointer carries its text twice (body and formatted_body) and must stay
# under Synapse's 64 KiB event limit, which a long original alone can reach;
# past this many UTF-8 bytes the fallback is cut (the expansion has it all).
MAX_FALLBACK_BYTES: Final = 16_000
TRUNCATED_MARK: Final = " […]"

# A reply's fallback: the quoted message at the head of formatted_body, up to
# the last closing tag (a fallback never nests another one, but a sloppy client
# may leave one in), and the "> " lines plus one blank line heading body.
_MX_REPLY: Final = re.compile(r"^\s*<mx-reply>.*</mx-reply>", re.DOTALL | re.IGNORECASE)
_QUOTED_LINES: Final = re.compile(r"^(?:>[^\n]*(?:\n|$))+(?:[ \t]*\n)?")

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
    room_address: str | None = None


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


def is_reply(content: Mapping[str, Any]) -> bool:
    """Whether ``content`` replies to a message (a thread's fallback reply does not)."""
    relates = content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return False
    reply = relates.get("m.in_reply_to")
    if not isinstance(reply, Mapping) or not isinstance(reply.get("event_id"), str):
        return False
    return not (relates.get("rel_type") == "m.thread" and relates.get("is_falling_back") is True)


def strip_reply_fallback(
    body: str, formatted_body: str | None, reply: bool
) -> tuple[str, str | None]:
    """``body`` and ``formatted_body`` without the quote of the replied-to message.

    The pointer carries its own ``m.in_reply_to``; a kept fallback would reach
    an HTML-to-text bridge as a quote of a message from the other room, with
    the pointer's sender name glued in front of it. ``<mx-reply>`` is dropped
    whatever the relation: it exists only as a fallback. Quote lines in
    ``body`` go only for a reply, since a plain message may start with one;
    a reply that is nothing but a quote keeps it.
    """
    if formatted_body is not None:
        formatted_body = _MX_REPLY.sub("", formatted_body, count=1)
    if reply:
        stripped = _QUOTED_LINES.sub("", body, count=1)
        body = stripped if stripped.strip() else body
    return body, formatted_body


def _head(name: str, msgtype: str) -> tuple[str, str]:
    """The sender's name before the text, as plain text and as marked HTML.

    MSC4144's fallback is the name, a colon and a space, HTML-escaped in an
    element carrying ``data-mx-profile-fallback`` and nothing else, so
    clients showing the profile find and drop it. The element is a
    ``<span>``, not the MSC's suggested ``<strong>``: bridges that turn HTML
    into text write emphasis as asterisks (``*alice:*``), and the name must
    read there as any speaker's does (``alice: text``). The space after the
    name stands outside the element: HTML-to-text converters (mautrix's, which
    heisenbridge uses) trim whitespace at an element's edges, which read
    ``alice:text`` on IRC; a client that drops the element shows the text
    after a leading space, which HTML collapses. An emote keeps its actor
    without the colon: "* alice waves".
    """
    head = name if msgtype == "m.emote" else f"{name}:"
    marked = html.escape(head, quote=False)
    return f"{head} ", f"<{FALLBACK_ELEMENT} {FALLBACK_ATTRIBUTE}>{marked}</{FALLBACK_ELEMENT}> "


def _texts(content: Mapping[str, Any], reply: bool) -> tuple[str, str]:
    """The plain and HTML text of a message, fallbacks gone, cut to fit an event."""
    body = str(content.get("body", ""))
    formatted = (
        str(content["formatted_body"])
        if content.get("format") == "org.matrix.custom.html"
        and isinstance(content.get("formatted_body"), str)
        else None
    )
    body, formatted = strip_reply_fallback(body, formatted, reply)
    html_body = formatted if formatted and formatted.strip() else _html_of_text(body)
    if max(len(body.encode()), len(html_body.encode())) > MAX_FALLBACK_BYTES:
        body = _cut(body, MAX_FALLBACK_BYTES) + TRUNCATED_MARK
        html_body = _html_of_text(body)
    return body, html_body


def render(
    original: Original, mode: FallbackMode, *, reply: bool | None = None, by_ghost: bool = False
) -> dict[str, Any]:
    """Pointer content (without relations) for ``original``.

    ``reply`` says whether the original replies to a message; by default its
    own ``m.relates_to`` tells. An edit's new content carries no relation, so
    the caller passes the edited event's answer to strip a fallback from it.
    ``by_ghost``: the author's ghost sends it, so the sender already is the
    person: no name in front and no per-message profile.
    """
    if mode is FallbackMode.PLACEHOLDER:
        return _render_placeholder(original)
    content = original.content
    msgtype = content.get("msgtype")
    if original.type == "m.sticker":
        msgtype = "m.image"
    elif msgtype not in MEDIA_MSGTYPES and msgtype not in TEXT_MSGTYPES:
        msgtype = "m.text"
    body, html_body = _texts(content, is_reply(content) if reply is None else reply)
    out: dict[str, Any] = {"msgtype": msgtype}
    if msgtype in MEDIA_MSGTYPES:
        # The body becomes a caption naming the sender, so the file keeps its
        # name in ``filename`` (how clients tell a caption from a file name).
        out.update({k: content[k] for k in _MEDIA_KEYS if k in content})
        body = body or ("sticker" if original.type == "m.sticker" else "file")
        if not isinstance(out.get("filename"), str):
            out["filename"] = str(content.get("body") or body)
        html_body = html_body or _html_of_text(body)
    if by_ghost:
        out["body"] = body
        out["format"] = "org.matrix.custom.html"
        out["formatted_body"] = html_body
        out[POINTER_KEY] = pointer_ref(original)
        return out
    plain_head, html_head = _head(_name(original), msgtype)
    out["body"] = plain_head + body
    out["format"] = "org.matrix.custom.html"
    # MSC4144: clients showing the profile remove the marked name.
    out["formatted_body"] = html_head + html_body
    out[PROFILE_KEY] = _profile(original, has_fallback=True)
    out[POINTER_KEY] = pointer_ref(original)
    return out


def _state_change(original: Original) -> tuple[str, str]:
    """What a state change did, with and without its content."""
    content, where = original.content, original.room_address or original.room_id
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


# The reason of a redaction whose original gave none.
DEFAULT_REDACTION_REASON: Final = "The original was redacted"
# Synapse takes any length; a reason past this is cut, as a body is.
MAX_REASON_CHARS: Final = 1_000


def redaction_reason(redaction: Mapping[str, Any]) -> str:
    """The reason a redaction's counterpart gives: the original's own, so
    the other room reads why, not only that, a message went."""
    reason = redaction.get("reason")
    if isinstance(reason, str) and reason.strip():
        return reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "…"
    return DEFAULT_REDACTION_REASON


def _html_of_text(text: str) -> str:
    return html.escape(text, quote=False).replace("\n", "<br>")


def _cut(text: str, max_bytes: int) -> str:
    """A prefix of ``text`` that fits ``max_bytes`` as UTF-8 and as escaped HTML."""
    cut = text.encode()[:max_bytes].decode(errors="ignore")
    while len(_html_of_text(cut).encode()) > max_bytes:
        cut = cut[: len(cut) * 3 // 4]
    return cut


def _render_placeholder(original: Original) -> dict[str, Any]:
    where = original.room_address or original.room_id
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
    points at the edit it carries, so edits map like any other event. Its
    fallback (what clients without edits, and bridges, show) names whose
    message changed: ``* Alice edited: new text``.
    """
    new_content = {k: v for k, v in new_pointer.items() if k != "m.relates_to"}
    # The name the pointer itself shows, so its head comes off exactly.
    profile = new_content.get(PROFILE_KEY)
    shown = (
        profile.get("displayname") or profile.get("id") if isinstance(profile, Mapping) else None
    )
    body, formatted = _edit_fallback(new_content, str(shown or _name(edit)))
    content: dict[str, Any] = {
        "msgtype": new_content.get("msgtype", "m.text"),
        "body": body,
        "m.new_content": new_content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target_pointer_id},
        POINTER_KEY: pointer_ref(edit),
    }
    if formatted is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = formatted
    return content


def _edit_fallback(new_content: Mapping[str, Any], name: str) -> tuple[str, str | None]:
    body = str(new_content.get("body", ""))
    formatted = new_content.get("formatted_body")
    formatted = formatted if isinstance(formatted, str) else None
    if PROFILE_KEY not in new_content:
        # A placeholder already says who wrote; it only gains the edit mark.
        return "* " + body, None if formatted is None else "* " + formatted
    msgtype = str(new_content.get("msgtype", "m.text"))
    plain_head, html_head = _head(name, msgtype)
    body = body.removeprefix(plain_head)
    formatted = (formatted or _html_of_text(body)).removeprefix(html_head)
    if msgtype == "m.emote":
        # An emote reads only with its actor: "* Alice edited: Alice waves".
        body, formatted = plain_head + body, html.escape(plain_head, quote=False) + formatted
    # Plain, like the pointer's own name: a bridge shows "* alice edited: ...".
    label = f"{name} edited: "
    return f"* {label}{body}", f"* {html.escape(label, quote=False)}{formatted}"
