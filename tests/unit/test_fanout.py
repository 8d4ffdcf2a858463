"""The fan-out tag, the copy map and the merge of copies, on plain values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from synapse_room_connect.fanout import mapping, protocol
from synapse_room_connect.fanout.mapping import CopyMap, CopyMapError
from synapse_room_connect.fanout.merge import merge_timeline
from synapse_room_connect.fanout.protocol import FanoutTag

A, B, C = "!a:hs1", "!b:hs2", "!c:hs1"
ALICE, MALLORY = "@alice:hs1", "@mallory:hs2"


def event(
    event_id: str,
    room_id: str,
    content: dict[str, Any],
    *,
    sender: str = ALICE,
    ts: int = 0,
    type: str = "m.room.message",
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "room_id": room_id,
        "sender": sender,
        "origin_server_ts": ts,
        "type": type,
        "content": content,
    }


def copy(event_id: str, room_id: str, fid: str, body: str, origin: str = A, **kw: Any) -> Any:
    return event(event_id, room_id, protocol.text_content(body, FanoutTag(fid, origin)), **kw)


# -- protocol -------------------------------------------------------------------


def test_tag_round_trips_and_rejects_junk() -> None:
    tag = protocol.new_tag(A)
    assert protocol.tag_of(protocol.text_content("hi", tag)) == tag
    assert len(tag.id) == 32
    for bad in (
        None,
        "x",
        {"id": "x"},
        {"id": 5, "origin_room_id": A},
        {"id": "", "origin_room_id": A},
        {"id": "has space", "origin_room_id": A},
        {"id": "a:b", "origin_room_id": A},
        {"id": "x" * 256, "origin_room_id": A},
        {"id": "x", "origin_room_id": "#alias:hs"},
        {"id": "x", "origin_room_id": "!"},
    ):
        assert protocol.tag_of({"body": "hi", protocol.FANOUT_KEY: bad}) is None, bad


def test_reply_and_edit_contents() -> None:
    tag, target = FanoutTag("new", A), FanoutTag("old", B)
    assert protocol.text_content("yes", tag, reply_to="$p")["m.relates_to"] == {
        "m.in_reply_to": {"event_id": "$p"}
    }
    assert "m.relates_to" not in protocol.text_content("yes", tag)
    edit = protocol.edit_content("fixed", tag, target_event_id="$t", target_tag=target)
    assert edit["body"] == "* fixed"
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$t"}
    assert protocol.tag_of(edit) == tag
    assert protocol.tag_of(edit["m.new_content"]) == target
    assert "m.relates_to" not in edit["m.new_content"]


def test_transaction_id_is_stable_per_room_and_hides_the_tag() -> None:
    tag = FanoutTag("0123456789abcdef", A)
    assert protocol.transaction_id(tag, A) == protocol.transaction_id(tag, A)
    assert protocol.transaction_id(tag, A) != protocol.transaction_id(tag, B)
    assert tag.id not in protocol.transaction_id(tag, A)


# -- copy map ---------------------------------------------------------------------


def test_map_records_finds_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    copies = CopyMap.load(path)
    tag = FanoutTag("f1", A)
    assert copies.record(ALICE, tag, A, "$a")
    assert copies.record(ALICE, tag, B, "$b")
    assert not copies.record(ALICE, tag, B, "$other")  # first copy per room wins
    assert not copies.record(MALLORY, FanoutTag("f2", A), C, "$a")  # $a is taken
    copies.save()

    again = CopyMap.load(path)
    found = again.find("$b")
    assert found is not None
    assert (found.sender, found.tag, dict(found.events)) == (ALICE, tag, {A: "$a", B: "$b"})
    assert again.find("$other") is None
    assert again.get(MALLORY, "f1") is None  # ids belong to their sender


def test_same_id_from_another_sender_is_another_message(tmp_path: Path) -> None:
    copies = CopyMap(tmp_path / "map.json")
    copies.record(ALICE, FanoutTag("f", A), A, "$a")
    copies.record(MALLORY, FanoutTag("f", B), B, "$m")
    alice = copies.find("$a")
    assert alice is not None
    assert dict(alice.events) == {A: "$a"}


def test_map_forgets_the_oldest_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping, "MAX_MESSAGES_PER_SENDER", 2)
    copies = CopyMap(tmp_path / "map.json")
    for n in range(3):
        copies.record(ALICE, FanoutTag(f"f{n}", A), A, f"$e{n}")
    assert copies.find("$e0") is None
    assert copies.find("$e2") is not None


@pytest.mark.parametrize(
    "text",
    ["{not json", '{"version": 99, "senders": {}}', '{"version": 1, "senders": []}', "[]"],
)
def test_unusable_map_file_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(CopyMapError):
        CopyMap.load(path)


def test_map_save_is_atomic_and_only_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    copies = CopyMap(path)
    copies.save()
    assert not path.exists()
    copies.record(ALICE, FanoutTag("f", A), A, "$a")
    copies.save()
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["map.json"]


# -- merge ---------------------------------------------------------------------------


def test_copies_of_one_message_become_one_entry() -> None:
    entries = merge_timeline(
        [
            copy("$b1", B, "f1", "hello", ts=11),
            copy("$a1", A, "f1", "hello", ts=10),
            event("$plain", B, {"msgtype": "m.text", "body": "plain"}, sender="@bob:hs2", ts=12),
        ]
    )
    first, plain = entries
    assert (first.key, first.fanout_id) == (f"fanout:f1:{ALICE}", "f1")
    assert dict(first.copies) == {A: "$a1", B: "$b1"}
    assert (first.event_id, first.room_id, first.origin_room_id) == ("$a1", A, A)
    assert first.content["body"] == "hello"
    assert not first.divergent
    assert (plain.key, plain.fanout_id, dict(plain.copies)) == ("event:$plain", None, {B: "$plain"})


def test_origin_copy_missing_shows_the_earliest() -> None:
    (entry,) = merge_timeline([copy("$c1", C, "f1", "hi", ts=7), copy("$b1", B, "f1", "hi", ts=5)])
    assert (entry.event_id, entry.origin_room_id) == ("$b1", A)


def test_order_is_by_first_copy_then_key() -> None:
    entries = merge_timeline(
        [
            copy("$b2", B, "f2", "second", ts=20),
            copy("$a1", A, "f1", "first", ts=10),
            copy("$b1", B, "f1", "first", ts=30),  # late copy: the entry stays first
        ]
    )
    assert [e.fanout_id for e in entries] == ["f1", "f2"]


def test_another_sender_cannot_join_or_hide_a_message() -> None:
    entries = merge_timeline(
        [
            copy("$a1", A, "f1", "real", ts=1),
            copy("$m1", B, "f1", "fake", sender=MALLORY, ts=2),
        ]
    )
    assert [(e.sender, e.content["body"]) for e in entries] == [(ALICE, "real"), (MALLORY, "fake")]


def test_copies_claiming_another_origin_stay_apart() -> None:
    entries = merge_timeline(
        [copy("$a1", A, "f1", "hi", ts=1), copy("$b1", B, "f1", "hi", origin=B, ts=2)]
    )
    assert [dict(e.copies) for e in entries] == [{A: "$a1"}, {B: "$b1"}]


def test_divergent_copies_are_flagged() -> None:
    (entry,) = merge_timeline(
        [copy("$a1", A, "f1", "pay Bob", ts=1), copy("$b1", B, "f1", "pay Mallory", ts=2)]
    )
    assert entry.divergent
    assert entry.content["body"] == "pay Bob"  # the origin room's copy


def test_malformed_and_repeated_events_are_skipped() -> None:
    good = copy("$a1", A, "f1", "hi")
    entries = merge_timeline(
        [good, dict(good), {"event_id": "$x"}, {**good, "event_id": "$y", "content": "nope"}]
    )
    assert [e.event_id for e in entries] == ["$a1"]


def edit(event_id: str, room_id: str, target: str, body: str, fid: str, **kw: Any) -> Any:
    content = protocol.edit_content(
        body,
        FanoutTag(fid, A),
        target_event_id=target,
        target_tag=FanoutTag("f1", A),
    )
    return event(event_id, room_id, content, **kw)


def test_edits_of_any_copy_apply_and_the_latest_wins() -> None:
    entries = merge_timeline(
        [
            copy("$a1", A, "f1", "v1", ts=1),
            copy("$b1", B, "f1", "v1", ts=2),
            edit("$eb2", B, "$b1", "v2", "e2", ts=5),
            edit("$ea2", A, "$a1", "v2", "e2", ts=4),
            edit("$ea3", A, "$a1", "v3", "e3", ts=8),
            edit("$eb3", B, "$b1", "v3", "e3", ts=9),
        ]
    )
    (entry,) = entries
    assert entry.content["body"] == "v3"
    assert protocol.tag_of(entry.content) == FanoutTag("f1", A)
    assert entry.edit_event_id == "$ea3"  # the edit's copy in the shown room
    assert not entry.divergent


def test_a_late_copy_of_an_older_edit_does_not_win() -> None:
    (entry,) = merge_timeline(
        [
            copy("$a1", A, "f1", "v1", ts=1),
            copy("$b1", B, "f1", "v1", ts=1),
            edit("$ea2", A, "$a1", "v2", "e2", ts=2),
            edit("$ea3", A, "$a1", "v3", "e3", ts=3),
            edit("$eb2", B, "$b1", "v2", "e2", ts=4),  # e2 reached B late
        ]
    )
    assert entry.content["body"] == "v3"


def test_edits_by_others_or_across_rooms_are_ignored() -> None:
    (entry,) = merge_timeline(
        [
            copy("$a1", A, "f1", "v1", ts=1),
            edit("$m", A, "$a1", "hacked", "e1", sender=MALLORY, ts=2),
            edit("$x", B, "$a1", "wrong room", "e2", ts=3),
            edit("$orphan", A, "$unknown", "nothing", "e3", ts=4),
        ]
    )
    assert entry.content["body"] == "v1"
    assert entry.edit_event_id is None


def test_edit_keeps_the_originals_relation() -> None:
    parent = copy("$a0", A, "f0", "question", ts=0)
    reply = event(
        "$a1", A, protocol.text_content("answer", FanoutTag("f1", A), reply_to="$a0"), ts=1
    )
    fixed = edit("$e", A, "$a1", "better answer", "e1", ts=2)
    _, entry = merge_timeline([parent, reply, fixed])
    assert entry.content["body"] == "better answer"
    assert entry.content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$a0"}}
    assert entry.reply_to == f"fanout:f0:{ALICE}"


def test_replies_resolve_through_any_copy_within_its_room() -> None:
    tag = FanoutTag("f2", A)
    entries = merge_timeline(
        [
            copy("$b1", B, "f1", "question", ts=1),  # only B's copy of the parent is here
            event("$a2", A, protocol.text_content("answer", tag, reply_to="$a1"), ts=2),
            event("$b2", B, protocol.text_content("answer", tag, reply_to="$b1"), ts=3),
            event(
                "$c",
                C,
                protocol.text_content("cross", FanoutTag("f3", C), reply_to="$b1"),
                ts=4,
            ),
        ]
    )
    question, answer, cross = entries
    assert answer.reply_to == question.key
    assert not answer.divergent  # relations differ per room by design
    assert cross.reply_to is None  # a reply names an event of its own room
