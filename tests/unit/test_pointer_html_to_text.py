"""Every kind of pointer, converted to text by a real HTML-to-text library."""

import pytest

from tests.pointer_examples import EXAMPLES, Example, as_text, pointer


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.kind)
def test_plain_text_of_formatted_body_is_the_body(example: Example) -> None:
    content = pointer(example)
    # What a bridge that drops markup sends on: the same line as body.
    assert as_text(content["formatted_body"]) == content["body"]
    assert example.text in content["body"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.kind)
def test_name_reads_without_emphasis_marks(example: Example) -> None:
    # A bridge that writes emphasis as asterisks shows the name as any
    # speaker's: "Alice: text", never "**Alice:**".
    text = as_text(pointer(example)["formatted_body"], emphasis=True)
    if example.edit_of is not None:
        assert text == f"* Alice edited: {example.text}"
    elif example.content["msgtype"] == "m.emote":
        assert text == f"Alice {example.text}"
    else:
        # Exactly one space, then the text (emphasis of its own may differ).
        assert text.startswith("Alice: ")
        assert text.removeprefix("Alice: ").replace("_", "") == example.text


def test_reply_crosses_without_the_quoted_message() -> None:
    reply = next(e for e in EXAMPLES if e.kind == "reply")
    content = pointer(reply)
    for text in (content["body"], as_text(content["formatted_body"], emphasis=True)):
        assert "Friday" not in text
        assert "bob" not in text
        assert ">" not in text
