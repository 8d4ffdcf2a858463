"""Pointer rendering and relation mapping, on plain values."""

from typing import Any

from synapse_room_connect.config import FallbackMode
from synapse_room_connect.ferry.pointers import (
    DEFAULT_REDACTION_REASON,
    MAX_FALLBACK_BYTES,
    MAX_REASON_CHARS,
    PROFILE_KEY,
    Original,
    edit_content,
    map_relation,
    redaction_reason,
    render,
    render_state,
)

POINTER = "org.matrix.msc2923.pointer"


def original(content: dict[str, Any], **overrides: Any) -> Original:
    fields: dict[str, Any] = {
        "room_id": "!a:hs",
        "event_id": "$orig",
        "sender": "@alice:hs",
        "origin_server_ts": 1234,
        "type": "m.room.message",
        "content": content,
        "displayname": "Alice",
        "avatar_url": "mxc://hs/face",
        "room_address": "#a:hs",
    }
    fields.update(overrides)
    return Original(**fields)


def test_text_is_prefixed_and_marked_as_fallback() -> None:
    out = render(original({"msgtype": "m.text", "body": "a < b"}), FallbackMode.COPY)
    assert out["body"] == "Alice: a < b"
    assert out["formatted_body"] == "<span data-mx-profile-fallback>Alice:</span> a &lt; b"
    assert out[PROFILE_KEY] == {
        "id": "@alice:hs",
        "displayname": "Alice",
        "avatar_url": "mxc://hs/face",
        "has_fallback": True,
    }
    assert out[POINTER] == {
        "room_id": "!a:hs",
        "event_id": "$orig",
        "sender": "@alice:hs",
        "origin_server_ts": 1234,
    }


def test_html_body_is_kept() -> None:
    content = {
        "msgtype": "m.notice",
        "body": "bold",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>bold</b>",
    }
    out = render(original(content), FallbackMode.COPY)
    assert out["msgtype"] == "m.notice"
    assert out["formatted_body"].endswith("<b>bold</b>")


def test_sender_without_displayname_is_named_by_id() -> None:
    out = render(original({"msgtype": "m.text", "body": "x"}, displayname=None), FallbackMode.COPY)
    assert out["body"] == "@alice:hs: x"


def test_media_keeps_url_and_info() -> None:
    content = {"msgtype": "m.file", "body": "a.pdf", "url": "mxc://hs/f", "info": {"size": 3}}
    out = render(original(content), FallbackMode.COPY)
    assert (out["msgtype"], out["url"], out["info"], out["filename"]) == (
        "m.file",
        "mxc://hs/f",
        {"size": 3},
        "a.pdf",
    )
    assert out["body"] == "Alice: a.pdf"
    assert out[PROFILE_KEY]["has_fallback"] is True


def test_sticker_becomes_an_image() -> None:
    sticker = original({"body": "cat", "url": "mxc://hs/s", "info": {}}, type="m.sticker")
    out = render(sticker, FallbackMode.COPY)
    assert (out["msgtype"], out["url"]) == ("m.image", "mxc://hs/s")


def test_unknown_msgtype_is_text() -> None:
    out = render(original({"msgtype": "org.example.poll", "body": "vote"}), FallbackMode.COPY)
    assert out["msgtype"] == "m.text"


def test_placeholder_hides_content() -> None:
    out = render(original({"msgtype": "m.text", "body": "secret"}), FallbackMode.PLACEHOLDER)
    assert "secret" not in out["body"]
    assert "secret" not in out["formatted_body"]
    assert out["body"].startswith("Alice wrote in #a:hs.")
    assert "https://matrix.to/#/!a:hs/$orig" in out["body"]
    assert out[POINTER]["event_id"] == "$orig"


def test_reply_and_thread_mapping() -> None:
    mapping = {"$q": "$q2", "$root": "$root2"}
    assert map_relation({"m.in_reply_to": {"event_id": "$q"}}, mapping.get) == {
        "m.in_reply_to": {"event_id": "$q2"}
    }
    assert map_relation({"m.in_reply_to": {"event_id": "$unknown"}}, mapping.get) is None
    thread = {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$root"},
    }
    assert map_relation(thread, mapping.get) == {
        "rel_type": "m.thread",
        "event_id": "$root2",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$root2"},
    }
    # A thread whose root never crossed degrades to a plain message.
    assert map_relation({"rel_type": "m.thread", "event_id": "$gone"}, mapping.get) is None


def test_edit_points_at_the_edit_and_replaces_the_pointer() -> None:
    renewed = render(original({"msgtype": "m.text", "body": "v2"}), FallbackMode.COPY)
    edit = original({}, event_id="$edit")
    out = edit_content(renewed, "$pointer", edit)
    assert out["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$pointer"}
    assert out["body"] == "* Alice edited: v2"
    assert out["m.new_content"]["body"] == "Alice: v2"
    assert out["m.new_content"][POINTER]["event_id"] == "$orig"
    assert out[POINTER]["event_id"] == "$edit"


def test_state_changes_render_as_notices() -> None:
    topic = original({"topic": "Release <b>day</b>"}, type="m.room.topic")
    out = render_state(topic, FallbackMode.COPY)
    assert out["msgtype"] == "m.notice"
    assert out["body"] == "Alice changed the topic of #a:hs to: Release <b>day</b>"
    assert "&lt;b&gt;day&lt;/b&gt;" in out["formatted_body"]
    assert "https://matrix.to/#/!a:hs/$orig" in out["formatted_body"]
    assert out[POINTER] == {
        "room_id": "!a:hs",
        "event_id": "$orig",
        "sender": "@alice:hs",
        "origin_server_ts": 1234,
    }
    name = original({"name": "Lobby"}, type="m.room.name")
    assert render_state(name, FallbackMode.COPY)["body"] == "Alice renamed #a:hs to Lobby"
    other = original({"pinned": ["$x"]}, type="m.room.pinned_events")
    assert render_state(other, FallbackMode.COPY)["body"] == (
        "Alice changed m.room.pinned_events in #a:hs"
    )


def test_state_changes_in_placeholder_mode_leave_the_content_out() -> None:
    topic = original({"topic": "the secret plan"}, type="m.room.topic")
    out = render_state(topic, FallbackMode.PLACEHOLDER)
    assert out["body"] == "Alice changed the topic of #a:hs"
    assert "secret" not in out["formatted_body"]


def test_long_text_is_cut_to_fit_an_event() -> None:
    # Escaping multiplies "<" by four and a newline becomes "<br>".
    for text in ("x" * 60_000, "<\n" * 20_000, "é" * 30_000):
        out = render(original({"msgtype": "m.text", "body": text}), FallbackMode.COPY)
        assert out["body"].startswith("Alice: ")
        assert out["body"].endswith(" […]")
        assert len(out["body"].encode()) <= MAX_FALLBACK_BYTES + 100
        assert len(out["formatted_body"].encode()) <= MAX_FALLBACK_BYTES + 100
    html_only = {"msgtype": "m.text", "body": "short", "format": "org.matrix.custom.html"}
    out = render(original({**html_only, "formatted_body": "<b>" * 10_000}), FallbackMode.COPY)
    assert out["body"] == "Alice: short […]"
    assert "<b>" not in out["formatted_body"]


def test_a_redaction_s_counterpart_gives_the_original_s_reason() -> None:
    assert redaction_reason({"reason": "spam"}) == "spam"
    for none_given in ({}, {"reason": ""}, {"reason": "  "}, {"reason": 5}):
        assert redaction_reason(none_given) == DEFAULT_REDACTION_REASON
    long = redaction_reason({"reason": "x" * 5000})
    assert long == "x" * MAX_REASON_CHARS + "…"
