"""The stand-in sender refuses what Synapse 1.163.2's
``EventCreationHandler._validate_event_relation`` refuses, and nothing else:
the ferry tests that lean on it are only as good as that imitation."""

from __future__ import annotations

import asyncio
from typing import Any

from synapse_room_connect.ferry.interfaces import Counterpart, CounterpartKind, Outgoing

from .ferry_stand_ins import SOURCE, TARGET, MemorySender


def item(
    txn_id: str, relates: dict[str, Any] | None = None, type: str = "m.room.message"
) -> Outgoing:
    content: dict[str, Any] = {"body": txn_id}
    if relates is not None:
        content["m.relates_to"] = relates
    return Outgoing(txn_id, Counterpart(type, content, CounterpartKind.MESSAGE))


def send(sender: MemorySender, room: str, *items: Outgoing) -> Exception | None:
    return asyncio.run(sender.send({room: list(items)}))[room]


def persisted(sender: MemorySender, room: str, txn_id: str) -> str:
    return sender.by_txn[(room, txn_id)]


def test_a_plain_reply_to_an_unknown_event_is_accepted() -> None:
    sender = MemorySender()
    assert send(sender, TARGET, item("t1", {"m.in_reply_to": {"event_id": "$unknown"}})) is None


def test_a_relation_to_an_unknown_event_refuses_the_whole_chain() -> None:
    sender = MemorySender()
    chain = [item("t0"), item("t1", {"rel_type": "m.thread", "event_id": "$unknown"})]
    error = send(sender, TARGET, *chain)
    assert error is not None
    assert "unknown event" in str(error)
    assert sender.by_txn == {}
    # Nor may it relate to an event earlier in the same chain.
    error = send(
        sender, TARGET, item("t2"), item("t3", {"rel_type": "m.reference", "event_id": "$p0-t2"})
    )
    assert error is not None
    assert sender.by_txn == {}


def test_a_relation_to_a_persisted_event_of_the_room_is_accepted() -> None:
    sender = MemorySender()
    assert send(sender, TARGET, item("t0")) is None
    root = persisted(sender, TARGET, "t0")
    assert send(sender, TARGET, item("t1", {"rel_type": "m.thread", "event_id": root})) is None
    # In another room it is refused.
    error = send(sender, SOURCE, item("t2", {"rel_type": "m.reference", "event_id": root}))
    assert error is not None
    assert "same room" in str(error)


def test_an_unknown_event_another_relation_names_is_accepted() -> None:
    # Synapse trusts a client that relates to what others already relate to.
    sender = MemorySender()
    assert send(sender, TARGET, item("t0")) is None
    known = persisted(sender, TARGET, "t0")
    assert send(sender, TARGET, item("t1", {"rel_type": "m.reference", "event_id": known})) is None
    sender.persisted.pop(known)  # e.g. purged since
    assert send(sender, TARGET, item("t2", {"rel_type": "m.reference", "event_id": known})) is None


def test_annotations_need_a_key_once_and_threads_a_plain_root() -> None:
    sender = MemorySender()
    assert send(sender, TARGET, item("t0")) is None
    target = persisted(sender, TARGET, "t0")
    like = {"rel_type": "m.annotation", "event_id": target, "key": "👍"}
    assert send(sender, TARGET, item("t1", like, type="m.reaction")) is None
    assert send(sender, TARGET, item("t2", like, type="m.reaction")) is not None
    no_key = {"rel_type": "m.annotation", "event_id": target}
    assert send(sender, TARGET, item("t3", no_key, type="m.reaction")) is not None
    too_long = dict(like, key="x" * 501)
    assert send(sender, TARGET, item("t4", too_long, type="m.reaction")) is not None
    reaction = persisted(sender, TARGET, "t1")
    error = send(sender, TARGET, item("t5", {"rel_type": "m.thread", "event_id": reaction}))
    assert error is not None
    assert "threads" in str(error)
