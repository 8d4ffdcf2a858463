"""CounterpartPreparer: what each kind of original becomes in a target room,
with its relations mapped through the pointer records, on real Synapse events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest
from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect.config import FallbackMode, RoomConnectConfig
from synapse_room_connect.constants import POINTER_KEY
from synapse_room_connect.ferry.interfaces import (
    Counterpart,
    CounterpartKind,
    RelationPendingError,
)
from synapse_room_connect.ferry.prepare import CounterpartPreparer
from synapse_room_connect.store import ActiveTarget, SourceEvent
from synapse_room_connect.synapse_compat import sql

from .ferry_stand_ins import ALICE, BOT, SOURCE, TARGET, MemoryFerryStore, event

BOB = "@bob:hs1"
THIRD = "!third:hs1"  # a third room of a mesh with SOURCE and TARGET
OLD_TARGET = "!old-target:hs1"  # the room TARGET replaced


class PreparerHomeserver:
    """The ``ModuleApi`` calls the preparer makes, over dictionaries:
    ``get_room_state`` with a filter of (type, state key) pairs, and, through
    ``synapse_compat.events``, its store's ``get_event(event_id,
    allow_none=True, redact_behaviour=...)`` and ``run_db_interaction`` of
    ``sql.live_annotations`` (the live reactions to an event with a key, by a
    sender or by anyone but one). Signatures checked against Synapse 1.163.2."""

    def __init__(self) -> None:
        self._store = self  # what synapse_compat reaches the store through
        self.events: dict[str, EventBase] = {}
        self.state: dict[str, dict[tuple[str, str], EventBase]] = {}
        self.annotations: set[tuple[str, str, str, str]] = set()

    def add_state(self, ev: EventBase) -> None:
        assert ev.state_key is not None
        self.state.setdefault(ev.room_id, {})[(ev.type, ev.state_key)] = ev
        self.events[ev.event_id] = ev

    async def get_room_state(
        self, room_id: str, event_filter: list[tuple[str, str]]
    ) -> dict[tuple[str, str], EventBase]:
        state = self.state.get(room_id, {})
        return {key: state[key] for key in event_filter if key in state}

    async def get_event(
        self, event_id: str, allow_none: bool = False, redact_behaviour: object = None
    ) -> EventBase | None:
        assert allow_none
        return self.events.get(event_id)

    async def run_db_interaction(
        self, desc: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        assert func is sql.live_annotations, desc
        event_id, key = args
        sender, exclude = kwargs.get("sender"), kwargs.get("exclude_sender")
        found = [
            (f"$reaction-{who}", who)
            for parent, kind, key_, who in sorted(self.annotations)
            if (parent, kind, key_) == (event_id, "m.reaction", key)
            and (sender is None or who == sender)
            and (exclude is None or who != exclude)
        ]
        return found[: kwargs.get("limit", 100)]


class Rig:
    def __init__(self, mode: FallbackMode = FallbackMode.COPY) -> None:
        self.hs = PreparerHomeserver()
        self.store = MemoryFerryStore()
        self.preparer = CounterpartPreparer(
            cast(ModuleApi, self.hs),
            RoomConnectConfig(fallback_mode=mode),
            self.store,
            BOT,
            self.address,
        )
        self.hs.add_state(
            event(
                "$alice-member",
                type="m.room.member",
                state_key=ALICE,
                sender=ALICE,
                content={"membership": "join", "displayname": "Alice"},
            )
        )

    async def address(self, room_id: str) -> str:
        return "#" + room_id.removeprefix("!")

    def original(self, ev: EventBase, stream: int | None = None) -> EventBase:
        """An event the homeserver holds, at ``stream`` in its event stream."""
        if stream is not None:
            ev.internal_metadata.stream_ordering = stream
        self.hs.events[ev.event_id] = ev
        return ev

    def ferried(self, source_event_id: str, pointer_id: str, room: str = SOURCE) -> None:
        """``source_event_id`` of ``room`` already carried into TARGET as ``pointer_id``."""
        self.store.pointers[(source_event_id, TARGET)] = pointer_id
        self.store.originals[pointer_id] = SourceEvent(room, source_event_id)

    def prepare(self, ev: EventBase, *, wait: bool = True) -> Counterpart | None:
        return asyncio.run(self.preparer.prepare(ev, TARGET, wait_for_relations=wait))


def message(event_id: str, body: str = "hello", relates: dict[str, Any] | None = None) -> EventBase:
    content: dict[str, Any] = {"msgtype": "m.text", "body": body}
    if relates is not None:
        content["m.relates_to"] = relates
    return event(event_id, content=content)


def replying(event_id: str, to: str) -> EventBase:
    return message(event_id, relates={"m.in_reply_to": {"event_id": to}})


def test_a_message_becomes_a_pointer_naming_its_original() -> None:
    rig = Rig()
    counterpart = rig.prepare(message("$m", "hello there"))
    assert counterpart is not None
    assert (counterpart.type, counterpart.kind) == ("m.room.message", CounterpartKind.MESSAGE)
    content = counterpart.content
    assert content[POINTER_KEY] == {
        "room_id": SOURCE,
        "event_id": "$m",
        "sender": ALICE,
        "origin_server_ts": 1000,
    }
    # The sender's display name from the room's member state.
    assert content["body"].startswith("Alice")
    assert content["body"].endswith("hello there")
    assert "m.relates_to" not in content


def test_placeholder_mode_names_the_room_not_the_text() -> None:
    counterpart = Rig(FallbackMode.PLACEHOLDER).prepare(message("$m", "secret"))
    assert counterpart is not None
    assert "secret" not in counterpart.content["body"]
    assert "#source:hs1" in counterpart.content["body"]


def test_what_is_no_message_has_no_counterpart() -> None:
    rig = Rig()
    assert rig.prepare(event("$no-body", content={"msgtype": "m.text"})) is None
    assert rig.prepare(event("$custom", type="org.example.thing")) is None


def test_a_reply_is_mapped_to_the_counterpart_of_what_it_replies_to() -> None:
    rig = Rig()
    rig.ferried("$q", "$q-in-target")
    counterpart = rig.prepare(replying("$r", to="$q"))
    assert counterpart is not None
    assert counterpart.content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$q-in-target"}}


def test_a_reply_to_a_pointer_is_mapped_to_its_original_in_the_target() -> None:
    rig = Rig()
    # A pointer in SOURCE carrying a message of TARGET.
    rig.store.originals["$pointer-in-source"] = SourceEvent(TARGET, "$t")
    counterpart = rig.prepare(replying("$r", to="$pointer-in-source"))
    assert counterpart is not None
    assert counterpart.content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$t"}}


def test_a_reply_to_what_never_crossed_goes_without_its_relation() -> None:
    counterpart = Rig().prepare(replying("$r", to="$unknown"))
    assert counterpart is not None
    assert counterpart.kind is CounterpartKind.MESSAGE
    assert "m.relates_to" not in counterpart.content


def test_a_thread_message_is_mapped_into_the_pointer_thread() -> None:
    rig = Rig()
    rig.ferried("$root", "$root-in-target")
    rig.ferried("$last", "$last-in-target")
    relates = {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$last"},
    }
    counterpart = rig.prepare(message("$t", relates=relates))
    assert counterpart is not None
    assert counterpart.content["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root-in-target",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$last-in-target"},
    }


def edit(event_id: str, of: str, body: str, sender: str = ALICE) -> EventBase:
    return event(
        event_id,
        sender=sender,
        content={
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": of},
        },
    )


def test_an_edit_replaces_the_pointer_of_the_edited_message() -> None:
    rig = Rig()
    rig.original(message("$m", "helo"))
    rig.ferried("$m", "$m-in-target")
    counterpart = rig.prepare(edit("$e", of="$m", body="hello"))
    assert counterpart is not None
    assert (counterpart.type, counterpart.kind) == ("m.room.message", CounterpartKind.EDIT)
    content = counterpart.content
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$m-in-target"}
    assert content["m.new_content"]["body"].endswith("hello")
    # The replacement points at the message; the edit event at the edit.
    assert content["m.new_content"][POINTER_KEY]["event_id"] == "$m"
    assert content[POINTER_KEY]["event_id"] == "$e"
    assert content["body"] == "* Alice edited: hello"


def test_an_edit_by_anyone_but_the_author_has_no_counterpart() -> None:
    rig = Rig()
    rig.original(message("$m", "helo"))
    rig.ferried("$m", "$m-in-target")
    assert rig.prepare(edit("$e", of="$m", body="hijacked", sender=BOB)) is None


def test_an_edit_of_a_message_never_ferried_has_no_counterpart() -> None:
    rig = Rig()
    rig.original(message("$m", "helo"))
    assert rig.prepare(edit("$e", of="$m", body="hello")) is None


def test_an_edit_without_new_content_has_no_counterpart() -> None:
    rig = Rig()
    rig.ferried("$m", "$m-in-target")
    bad = event(
        "$e",
        content={"body": "* x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$m"}},
    )
    assert rig.prepare(bad) is None


def target_replaced_old_target(rig: Rig) -> None:
    """TARGET is the upgrade of OLD_TARGET: its create event names it."""
    rig.hs.add_state(
        event(
            "$create",
            room_id=TARGET,
            type="m.room.create",
            state_key="",
            content={"predecessor": {"room_id": OLD_TARGET, "event_id": "$tombstone"}},
        )
    )


def test_an_edit_after_the_target_was_upgraded_crosses_as_a_message() -> None:
    rig = Rig()
    rig.original(message("$m", "helo"))
    # $m crossed into the room TARGET replaced; TARGET has no pointer to edit.
    rig.store.pointers[("$m", OLD_TARGET)] = "$m-in-old-target"
    target_replaced_old_target(rig)
    counterpart = rig.prepare(edit("$e", of="$m", body="hello"))
    assert counterpart is not None
    assert counterpart.kind is CounterpartKind.MESSAGE
    assert counterpart.content[POINTER_KEY]["event_id"] == "$e"
    assert counterpart.content["body"].endswith("* hello")
    assert "m.relates_to" not in counterpart.content


def test_an_edit_of_what_the_old_room_never_had_either_has_no_counterpart() -> None:
    rig = Rig()
    rig.original(message("$m", "helo"))
    target_replaced_old_target(rig)
    assert rig.prepare(edit("$e", of="$m", body="hello")) is None


def reaction(event_id: str, to: str, key: str | None = "👍") -> EventBase:
    relates: dict[str, Any] = {"rel_type": "m.annotation", "event_id": to}
    if key is not None:
        relates["key"] = key
    return event(event_id, type="m.reaction", content={"m.relates_to": relates})


def test_a_reaction_is_the_bot_s_reaction_to_the_pointer() -> None:
    rig = Rig()
    rig.ferried("$m", "$m-in-target")
    counterpart = rig.prepare(reaction("$r", to="$m"))
    assert counterpart == Counterpart(
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$m-in-target", "key": "👍"}},
        CounterpartKind.REACTION,
    )


def test_a_reaction_the_bot_already_carries_or_cannot_carry_has_no_counterpart() -> None:
    rig = Rig()
    rig.ferried("$m", "$m-in-target")
    rig.hs.annotations.add(("$m-in-target", "m.reaction", "👍", BOT))
    assert rig.prepare(reaction("$r", to="$m")) is None  # Synapse allows one per key
    assert rig.prepare(reaction("$r2", to="$m", key=None)) is None
    assert rig.prepare(reaction("$r3", to="$never-ferried")) is None


def test_a_redaction_redacts_the_pointer() -> None:
    rig = Rig()
    rig.ferried("$m", "$m-in-target")
    counterpart = rig.prepare(event("$x", type="m.room.redaction", redacts="$m", content={}))
    assert counterpart is not None
    assert (counterpart.type, counterpart.kind) == ("m.room.redaction", CounterpartKind.REDACTION)
    assert counterpart.redacts == "$m-in-target"
    assert counterpart.content["redacts"] == "$m-in-target"
    assert counterpart.event_dict(TARGET, BOT)["redacts"] == "$m-in-target"
    assert rig.prepare(event("$y", type="m.room.redaction", redacts="$other", content={})) is None


def test_a_state_change_is_told_as_a_notice() -> None:
    topic = event("$topic", type="m.room.topic", state_key="", content={"topic": "Plans"})
    counterpart = Rig().prepare(topic)
    assert counterpart is not None
    assert (counterpart.type, counterpart.kind) == ("m.room.message", CounterpartKind.STATE)
    assert counterpart.content["msgtype"] == "m.notice"
    assert counterpart.content["body"] == "Alice changed the topic of #source:hs1 to: Plans"
    assert counterpart.content[POINTER_KEY]["event_id"] == "$topic"


def mesh() -> Rig:
    """THIRD's message $a crossed into SOURCE as $a-in-source; its own
    pointer into TARGET, due by the direction THIRD -> TARGET, has not gone."""
    rig = Rig()
    rig.original(event("$a", room_id=THIRD), stream=5)
    rig.store.pointers[("$a", SOURCE)] = "$a-in-source"
    rig.store.originals["$a-in-source"] = SourceEvent(THIRD, "$a")
    rig.store.targets[THIRD] = [ActiveTarget(TARGET, 0)]
    return rig


def test_a_relation_whose_counterpart_is_still_to_come_waits() -> None:
    rig = mesh()
    with pytest.raises(RelationPendingError):
        rig.prepare(reaction("$r", to="$a-in-source"))
    with pytest.raises(RelationPendingError):
        rig.prepare(replying("$q", to="$a-in-source"))
    # Told not to wait any longer: what can be mapped goes.
    assert rig.prepare(reaction("$r", to="$a-in-source"), wait=False) is None
    counterpart = rig.prepare(replying("$q", to="$a-in-source"), wait=False)
    assert counterpart is not None
    assert "m.relates_to" not in counterpart.content


def test_a_relation_whose_counterpart_came_maps_to_it() -> None:
    rig = mesh()
    rig.ferried("$a", "$a-in-target", room=THIRD)
    counterpart = rig.prepare(reaction("$r", to="$a-in-source"))
    assert counterpart is not None
    assert counterpart.content["m.relates_to"]["event_id"] == "$a-in-target"


def test_a_relation_whose_counterpart_will_never_come_does_not_wait() -> None:
    rig = mesh()
    # THIRD -> TARGET has read past $a without carrying it (withheld, say).
    rig.store.cursors_[(THIRD, TARGET)] = 5
    assert rig.prepare(reaction("$r", to="$a-in-source")) is None
    # Nor when THIRD does not ferry into TARGET at all.
    rig = mesh()
    rig.store.targets.clear()
    assert rig.prepare(reaction("$r", to="$a-in-source")) is None
