"""A reply and an edit, as an HTML-to-text bridge in the other room shows them."""

from __future__ import annotations

import html

from harness.connect_api import unique
from harness.ferry_helpers import POINTER, connected_pair, send_edit, wait_for_pointer
from harness.synapse import Homeserver
from tests.pointer_examples import as_text


def test_reply_and_edit_read_right_as_plain_text(homeserver: Homeserver) -> None:
    # The bot names the author in the text; a ghost is the author (test_ghosts.py).
    pair = connected_pair(homeserver, senders="bot")
    question = pair.bob.send_message(pair.room_b, "is it Friday?")
    question_in_a = wait_for_pointer(pair.alice, pair.room_a, question)

    # Alice's client quotes what she answers, as clients did before Matrix 1.13.
    quoted = f"{question_in_a['sender']}> {question_in_a['content']['body']}"
    answer = pair.alice.send_message(
        pair.room_a,
        f"> <{quoted}\n\nyes, all day",
        format="org.matrix.custom.html",
        formatted_body=(
            f"<mx-reply><blockquote>In reply to {html.escape(quoted)}</blockquote></mx-reply>"
            "yes, <b>all</b> day"
        ),
        **{"m.relates_to": {"m.in_reply_to": {"event_id": question_in_a["event_id"]}}},
    )
    reply = wait_for_pointer(pair.bob, pair.room_b, answer)["content"]
    # The reply points at Bob's own message again, and reads without the quote.
    assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": question}}
    assert reply["body"] == "Alice: yes, all day"
    assert as_text(reply["formatted_body"]) == "Alice: yes, all day"
    assert as_text(reply["formatted_body"], emphasis=True) == "Alice: yes, **all** day"

    new_text = unique("yes, all day long")
    edit_id = send_edit(pair.alice, pair.room_a, answer, new_text)
    edit = wait_for_pointer(pair.bob, pair.room_b, edit_id)["content"]
    assert edit["m.relates_to"]["rel_type"] == "m.replace"
    assert edit[POINTER]["event_id"] == edit_id
    assert edit["body"] == f"* Alice edited: {new_text}"
    assert as_text(edit["formatted_body"]) == f"* Alice edited: {new_text}"
    assert as_text(edit["m.new_content"]["formatted_body"]) == f"Alice: {new_text}"
