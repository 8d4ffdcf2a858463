"""Counterparts as people meet them, on a real homeserver, counted rather than
timed: Synapse's own highlight counts for a person in both rooms, the bot's
one reaction per key standing for every reactor, and redaction reasons."""

from __future__ import annotations

import itertools
import json

import pytest

from harness.client import JsonDict, MatrixClient
from harness.connect_api import unique
from harness.ferry_helpers import (
    POINTER,
    Pair,
    connected_pair,
    send_edit,
    wait_for_pointer,
)
from harness.synapse import Homeserver

MENTIONS = "m.mentions"


_syncs = itertools.count(1)


def highlights(client: MatrixClient, room_id: str) -> int:
    """Synapse's highlight count for ``client`` in ``room_id`` (threads included)."""
    # A filter of its own each time: Synapse answers a repeated initial sync
    # from a cache for two minutes.
    room_filter = {"room": {"rooms": [room_id], "timeline": {"limit": next(_syncs)}}}
    sync = client.request(
        "GET", "/_matrix/client/v3/sync", query={"timeout": 0, "filter": json.dumps(room_filter)}
    )
    room = sync["rooms"]["join"][room_id]
    return int(room.get("unread_notifications", {}).get("highlight_count", 0))


def join(pair: Pair, client: MatrixClient, room_id: str, inviter: MatrixClient) -> None:
    inviter.invite(room_id, client.user_id)
    client.join(room_id)


def wait_for_edit(client: MatrixClient, room_id: str, edit_id: str) -> JsonDict:
    return client.wait_for_event(
        room_id,
        lambda e: (
            e.get("content", {}).get(POINTER, {}).get("event_id") == edit_id
            and e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
        ),
        60,
        description=f"edit pointer to {edit_id}",
    )


@pytest.mark.parametrize("senders", ["bot", "ghosts"])
def test_own_crossed_messages_never_highlight_and_a_cross_room_mention_highlights_once(
    homeserver: Homeserver, senders: str
) -> None:
    pair = connected_pair(homeserver, senders=senders)
    alice, bob = pair.alice, pair.bob
    # Alice is in both rooms; each pointer of hers in B starts with "Alice:"
    # where the bot sends it, and comes from her ghost otherwise.
    join(pair, alice, pair.room_b, bob)

    plain = alice.send_message(pair.room_a, "plain, no m.mentions")
    said_none = alice.send_message(pair.room_a, "mentions nobody", **{MENTIONS: {}})
    edit = send_edit(alice, pair.room_a, said_none, "mentions nobody, edited")
    in_thread = alice.send_message(
        pair.room_a,
        "a thread reply",
        **{
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": plain,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": plain},
            },
            MENTIONS: {},
        },
    )
    for original in (plain, said_none, in_thread):
        pointer = wait_for_pointer(alice, pair.room_b, original)
        if senders == "bot":
            assert pointer["content"]["body"].startswith("Alice: ")
        else:
            assert pointer["sender"] != pair.bot
        assert pointer["content"][MENTIONS] == {}
    edit_pointer = wait_for_edit(alice, pair.room_b, edit)["content"]
    assert edit_pointer["body"].startswith("* Alice edited: " if senders == "bot" else "* ")
    assert edit_pointer[MENTIONS] == {}
    assert edit_pointer["m.new_content"][MENTIONS] == {}
    # Without m.mentions, Synapse's display-name rule would highlight each one.
    assert highlights(alice, pair.room_b) == 0

    # Bob mentions Alice in B: his pointer in A mentions her, once.
    mention = bob.send_message(
        pair.room_b,
        "Alice, have a look",
        **{MENTIONS: {"user_ids": [alice.user_id, "@nobody:elsewhere.example"]}},
    )
    pointer = wait_for_pointer(alice, pair.room_a, mention)["content"]
    # Only members of the target room stay mentioned.
    assert pointer[MENTIONS] == {"user_ids": [alice.user_id]}
    assert highlights(alice, pair.room_a) == 1
    # In B, the one highlight is Bob's original: none came from her own pointers.
    assert highlights(alice, pair.room_b) == 1


def test_a_room_mention_crosses_only_from_someone_with_the_power_there(
    homeserver: Homeserver,
) -> None:
    pair = connected_pair(homeserver)
    everyone = {"body": "@room look", MENTIONS: {"room": True}}
    # Bob may mention all of B, but is nobody in A (power 0 < 50).
    first = pair.bob.send_message(pair.room_b, everyone["body"], **{MENTIONS: everyone[MENTIONS]})
    assert wait_for_pointer(pair.alice, pair.room_a, first)["content"][MENTIONS] == {}
    # Once A gives him the power its notifications.room asks, his @room crosses.
    pair.alice.set_power_level(pair.room_a, pair.bob.user_id, 50)
    second = pair.bob.send_message(pair.room_b, everyone["body"], **{MENTIONS: everyone[MENTIONS]})
    assert wait_for_pointer(pair.alice, pair.room_a, second)["content"][MENTIONS] == {"room": True}


def react(client: MatrixClient, room_id: str, event_id: str, key: str) -> str:
    return client.send_event(
        room_id,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
    )


def redact(client: MatrixClient, room_id: str, event_id: str, reason: str | None = None) -> None:
    client.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/redact/{event_id}/{unique('txn')}",
        {} if reason is None else {"reason": reason},
    )


def reactions_by(client: MatrixClient, room_id: str, event_id: str, key: str) -> dict[str, str]:
    """Sender -> event ID of the live (unredacted) reactions ``key`` to ``event_id``."""
    page = client.request(
        "GET",
        f"/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/m.annotation/m.reaction",
        query={"limit": 100},
    )
    return {
        e["sender"]: e["event_id"]
        for e in page["chunk"]
        if e.get("content", {}).get("m.relates_to", {}).get("key") == key
    }


def live_reactions(client: MatrixClient, room_id: str, event_id: str, key: str) -> list[str]:
    """Senders of the live reactions ``key`` to ``event_id``."""
    return sorted(reactions_by(client, room_id, event_id, key))


def settled(pair: Pair, *, from_b: bool = False) -> None:
    """Everything said in one room before now has crossed into the other:
    each direction is ordered."""
    sender, room, reader, target = (
        (pair.bob, pair.room_b, pair.alice, pair.room_a)
        if from_b
        else (pair.alice, pair.room_a, pair.bob, pair.room_b)
    )
    marker = sender.send_message(room, unique("marker"))
    wait_for_pointer(reader, target, marker)


def test_the_bot_s_reaction_stays_while_anyone_reacts_and_comes_back(
    homeserver: Homeserver,
) -> None:
    pair = connected_pair(homeserver, senders="bot")
    carol = homeserver.register(unique("carol"), displayname="Carol")
    join(pair, carol, pair.room_a, pair.alice)
    message = pair.alice.send_message(pair.room_a, "react to me")
    pointer = wait_for_pointer(pair.bob, pair.room_b, message)["event_id"]

    first = react(pair.alice, pair.room_a, message, "👍")
    second = react(carol, pair.room_a, message, "👍")
    settled(pair)
    assert live_reactions(pair.bob, pair.room_b, pointer, "👍") == [pair.bot]

    # The first reactor takes theirs back: Carol still reacts, so the bot's stays.
    redact(pair.alice, pair.room_a, first)
    settled(pair)
    assert live_reactions(pair.bob, pair.room_b, pointer, "👍") == [pair.bot]

    # The last one does: it goes.
    redact(carol, pair.room_a, second)
    settled(pair)
    assert live_reactions(pair.bob, pair.room_b, pointer, "👍") == []

    # Someone reacts again: it is back, as a new event.
    react(carol, pair.room_a, message, "👍")
    settled(pair)
    assert live_reactions(pair.bob, pair.room_b, pointer, "👍") == [pair.bot]

    # Bob reacts in B: the bot reacts in A for him. B's admin removing the
    # bot's reaction in B (which stands for A's reactors) leaves it alone.
    react(pair.bob, pair.room_b, pointer, "👍")
    settled(pair, from_b=True)
    assert live_reactions(pair.alice, pair.room_a, message, "👍") == sorted(
        [carol.user_id, pair.bot]
    )
    in_b = reactions_by(pair.bob, pair.room_b, pointer, "👍")[pair.bot]
    redact(pair.bob, pair.room_b, in_b, reason="not here")
    settled(pair, from_b=True)
    assert live_reactions(pair.alice, pair.room_a, message, "👍") == sorted(
        [carol.user_id, pair.bot]
    )


def test_a_redaction_carries_its_reason(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    explained = pair.alice.send_message(pair.room_a, "wrong room")
    silent = pair.alice.send_message(pair.room_a, "never mind")
    pointers = [wait_for_pointer(pair.bob, pair.room_b, e)["event_id"] for e in (explained, silent)]
    redact(pair.alice, pair.room_a, explained, reason="posted in the wrong room")
    redact(pair.alice, pair.room_a, silent)

    def redaction_of(pointer: str) -> JsonDict:
        return pair.bob.wait_for_event(
            pair.room_b,
            lambda e: (
                e.get("type") == "m.room.redaction"
                and pointer in (e.get("redacts"), e.get("content", {}).get("redacts"))
            ),
            60,
            description=f"redaction of {pointer}",
        )

    assert redaction_of(pointers[0])["content"]["reason"] == "posted in the wrong room"
    assert redaction_of(pointers[1])["content"]["reason"] == "The original was redacted"
