"""One original per message kind, and the pointer the ferry renders for it.

The unit tests, the HTML-to-text checks and the table in docs/msc2923.md
(section "Pointer rendering") all come from here, so the documented rendering
is the rendering. Print the table with ``python -m tests.pointer_examples``.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import html2text

from synapse_room_connect.config import FallbackMode
from synapse_room_connect.ferry.pointers import Original, edit_content, render

REPLY_FALLBACK_BODY: Final = "> <@bob:b.example> is it Friday?\n\nyes, all day"
REPLY_FALLBACK_HTML: Final = (
    "<mx-reply><blockquote>"
    '<a href="https://matrix.to/#/!a:a.example/$q">In reply to</a> '
    '<a href="https://matrix.to/#/@bob:b.example">@bob:b.example</a>'
    "<br>is it Friday?</blockquote></mx-reply>yes, <em>all</em> day"
)


@attrs.frozen
class Example:
    """A message kind: what its sender wrote, and what the pointer must say."""

    kind: str
    sent: str  # how the original reads, for the table
    content: dict[str, Any]
    text: str  # the sender's own words, which must cross
    edit_of: dict[str, Any] | None = None  # for an edit: the edited message


EXAMPLES: Final = (
    Example("text", "`hello`", {"msgtype": "m.text", "body": "hello"}, "hello"),
    Example("emote", "`/me waves`", {"msgtype": "m.emote", "body": "waves"}, "waves"),
    Example(
        "notice",
        "`build passed` (m.notice)",
        {"msgtype": "m.notice", "body": "build passed"},
        "build passed",
    ),
    Example(
        "reply",
        "`yes, all day` replying to Bob, with reply fallback",
        {
            "msgtype": "m.text",
            "body": REPLY_FALLBACK_BODY,
            "format": "org.matrix.custom.html",
            "formatted_body": REPLY_FALLBACK_HTML,
            "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}},
        },
        "yes, all day",
    ),
    Example(
        "edit",
        "`hello` edited to `hello again`",
        {
            "msgtype": "m.text",
            "body": "* hello again",
            "m.new_content": {"msgtype": "m.text", "body": "hello again"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"},
        },
        "hello again",
        edit_of={"msgtype": "m.text", "body": "hello"},
    ),
    Example(
        "media",
        "image `cat.png`",
        {"msgtype": "m.image", "body": "cat.png", "url": "mxc://a.example/cat", "info": {}},
        "cat.png",
    ),
    Example(
        "thread message",
        "`on it` in a thread",
        {
            "msgtype": "m.text",
            "body": "on it",
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": "$root",
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": "$root"},
            },
        },
        "on it",
    ),
)


def original(content: dict[str, Any], event_id: str = "$orig") -> Original:
    return Original(
        room_id="!a:a.example",
        event_id=event_id,
        sender="@alice:a.example",
        origin_server_ts=1_700_000_000_000,
        type="m.room.message",
        content=content,
        displayname="Alice",
        room_address="#lobby:a.example",
    )


def pointer(example: Example, mode: FallbackMode = FallbackMode.COPY) -> dict[str, Any]:
    """The content the ferry sends for ``example`` (for an edit, the bot's edit)."""
    if example.edit_of is None:
        return render(original(example.content), mode)
    # As the ferry does: the edited message re-rendered with the new content,
    # wrapped in the bot's replacement of its pointer.
    renewed = render(original(example.content["m.new_content"]), mode)
    return edit_content(renewed, "$pointer", original(example.content, "$edit"))


def as_text(formatted_body: str, *, emphasis: bool = False) -> str:
    """``formatted_body`` as an HTML-to-text bridge shows it: as plain text,
    or with emphasis written ``**like this**``."""
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no wrapping: a chat line stays one line
    converter.ignore_emphasis = not emphasis
    return str(converter.handle(formatted_body)).strip()


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("\n", "\\n") + "`"


def table() -> str:
    rows = [
        "| kind | sent in room A by Alice | pointer `body` | pointer `formatted_body` |",
        "|---|---|---|---|",
    ]
    for example in EXAMPLES:
        content = pointer(example)
        rows.append(
            f"| {example.kind} | {example.sent} | {_cell(content['body'])} "
            f"| {_cell(content['formatted_body'])} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(table(), end="")
