"""How pointers read: reply fallbacks gone, the name kept apart, edits named."""

from pathlib import Path

import attrs
import pytest

from synapse_room_connect.config import FallbackMode
from synapse_room_connect.ferry.pointers import (
    PROFILE_KEY,
    edit_content,
    is_reply,
    render,
    strip_reply_fallback,
)
from tests.pointer_examples import EXAMPLES, Example, original, pointer, table

DOC = Path(__file__).resolve().parents[2] / "docs" / "msc2923.md"
MARK = "<span data-mx-profile-fallback>"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.kind)
def test_every_kind_names_the_sender_apart_from_the_text(example: Example) -> None:
    content = pointer(example)
    if example.edit_of is not None:
        assert content["body"] == f"* Alice edited: {example.text}"
        assert content["formatted_body"] == f"* Alice edited: {example.text}"
        content = content["m.new_content"]
    sep = " " if example.content["msgtype"] == "m.emote" else ": "
    assert content["body"] == f"Alice{sep}{example.text}"
    # MSC4144's fallback: the name and its colon alone in the marked element
    # (an emote's actor without the colon), the space after it outside, where
    # HTML-to-text bridges keep it.
    assert content["formatted_body"].startswith(f"{MARK}Alice{sep.rstrip()}</span> ")
    assert content[PROFILE_KEY]["has_fallback"] is True


def test_reply_fallback_is_stripped_from_both_bodies() -> None:
    reply = next(e for e in EXAMPLES if e.kind == "reply")
    content = pointer(reply)
    assert content["body"] == "Alice: yes, all day"
    assert content["formatted_body"] == f"{MARK}Alice:</span> yes, <em>all</em> day"


def test_reply_without_html_gets_html_of_its_own_text() -> None:
    reply = {
        "msgtype": "m.text",
        "body": "> <@bob:hs> line one\n> line two\n\nmy answer\n> my own quote",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}},
    }
    content = render(original(reply), FallbackMode.COPY)
    assert content["body"] == "Alice: my answer\n> my own quote"
    assert content["formatted_body"] == f"{MARK}Alice:</span> my answer<br>&gt; my own quote"


def test_quote_lines_stay_when_they_are_the_message() -> None:
    quote = "> to be or not to be\n\nsaid someone"
    plain = render(original({"msgtype": "m.text", "body": quote}), FallbackMode.COPY)
    assert plain["body"] == f"Alice: {quote}"
    # A thread message's m.in_reply_to is only a fallback for clients without threads.
    thread = next(e for e in EXAMPLES if e.kind == "thread message")
    in_thread = {**thread.content, "body": quote}
    assert render(original(in_thread), FallbackMode.COPY)["body"] == f"Alice: {quote}"
    only_quote = {
        "msgtype": "m.text",
        "body": "> just this",
        "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}},
    }
    assert render(original(only_quote), FallbackMode.COPY)["body"] == "Alice: > just this"


def test_is_reply() -> None:
    assert is_reply({"m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}})
    real_reply_in_thread = {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": False,
        "m.in_reply_to": {"event_id": "$q"},
    }
    assert is_reply({"m.relates_to": real_reply_in_thread})
    assert not is_reply({"m.relates_to": {**real_reply_in_thread, "is_falling_back": True}})
    for bad in ({}, {"m.relates_to": "x"}, {"m.relates_to": {"m.in_reply_to": {"event_id": 1}}}):
        assert not is_reply(bad)


def test_mx_reply_goes_even_when_sloppy() -> None:
    nested = "<mx-reply><mx-reply>old</mx-reply>quoted</mx-reply>answer"
    assert strip_reply_fallback("answer", nested, reply=True) == ("answer", "answer")
    # An edit's new content has no relation: the caller says it is a reply.
    new = {"msgtype": "m.text", "body": "> <@b:hs> q\n\nfixed", "format": "org.matrix.custom.html"}
    new["formatted_body"] = "<mx-reply>q</mx-reply>fixed"
    content = render(original(new), FallbackMode.COPY, reply=True)
    assert (content["body"], content["formatted_body"]) == (
        "Alice: fixed",
        f"{MARK}Alice:</span> fixed",
    )
    # A fallback that was the whole formatted body leaves the plain text to render.
    new["formatted_body"] = "<mx-reply>q</mx-reply>"
    assert render(original(new), FallbackMode.COPY, reply=True)["formatted_body"] == (
        f"{MARK}Alice:</span> fixed"
    )


def test_media_caption_names_the_sender_and_filename_keeps_the_file() -> None:
    captioned = {
        "msgtype": "m.image",
        "body": "look <here>",
        "filename": "cat.png",
        "url": "mxc://hs/cat",
    }
    content = render(original(captioned), FallbackMode.COPY)
    assert (content["body"], content["filename"]) == ("Alice: look <here>", "cat.png")
    assert content["formatted_body"] == f"{MARK}Alice:</span> look &lt;here&gt;"
    bare_sticker = attrs.evolve(original({"url": "mxc://hs/s", "body": ""}), type="m.sticker")
    sticker = render(bare_sticker, FallbackMode.COPY)
    assert (sticker["msgtype"], sticker["body"], sticker["filename"]) == (
        "m.image",
        "Alice: sticker",
        "sticker",
    )


def test_edit_fallbacks_of_emotes_media_and_placeholders() -> None:
    edit = original({}, event_id="$edit")
    emote = render(original({"msgtype": "m.emote", "body": "waves <3"}), FallbackMode.COPY)
    out = edit_content(emote, "$p", edit)
    assert out["body"] == "* Alice edited: Alice waves <3"
    assert out["formatted_body"] == "* Alice edited: Alice waves &lt;3"
    media = render(original({"msgtype": "m.file", "body": "v2.pdf"}), FallbackMode.COPY)
    assert edit_content(media, "$p", edit)["body"] == "* Alice edited: v2.pdf"
    hidden = render(original({"msgtype": "m.text", "body": "secret"}), FallbackMode.PLACEHOLDER)
    out = edit_content(hidden, "$p", edit)
    assert out["body"].startswith("* Alice wrote in #lobby:a.example")
    assert "secret" not in out["body"] + out["formatted_body"]


def test_edit_by_a_sender_without_displayname_uses_the_pointer_name() -> None:
    unnamed = attrs.evolve(original({"msgtype": "m.text", "body": "v2"}), displayname=None)
    renewed = render(unnamed, FallbackMode.COPY)
    # The edit's own record may carry a newer display name; the pointer's wins.
    out = edit_content(renewed, "$p", original({}, event_id="$edit"))
    assert out["body"] == "* @alice:a.example edited: v2"


def test_docs_table_is_the_rendering() -> None:
    assert table() in DOC.read_text(), (
        "docs/msc2923.md's rendering table is stale: regenerate it with "
        "`python -m tests.pointer_examples`"
    )
