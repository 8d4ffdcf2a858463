"""Ghost senders on real Synapse: each author's ghost sends what crosses,
named after them and their room, with their avatar; it follows their
profile, reacts for them alone, leaves with the connection, gives way to the
bot where a room will not have it, and nobody else can be it."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from harness.client import JsonDict, MatrixClient, MatrixError
from harness.connect_api import (
    connect,
    notices_from,
    revoke,
    unique,
    wait_for_membership,
    wait_for_notice,
)
from harness.ferry_helpers import (
    POINTER,
    PROFILE,
    Pair,
    barrier,
    connected_pair,
    send_edit,
    wait_for_pointer,
)
from harness.synapse import Homeserver, HomeserverFactory
from synapse_room_connect.constants import DEFAULT_GHOST_LOCALPART_PREFIX
from synapse_room_connect.core.ghosts import GhostNamespace

AVATAR = "mxc://example.org/alice-avatar"


def ghost_of(
    hs: Any, user_id: str, room_id: str, prefix: str = DEFAULT_GHOST_LOCALPART_PREFIX
) -> str:
    return GhostNamespace(prefix, hs.server_name).user_id_for(user_id, room_id)


def member(client: MatrixClient, room_id: str, user_id: str) -> JsonDict:
    return client.get_state(room_id, "m.room.member", user_id)


def react(client: MatrixClient, room_id: str, event_id: str, key: str) -> str:
    return client.send_event(
        room_id,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
    )


def redact(client: MatrixClient, room_id: str, event_id: str) -> None:
    client.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/redact/{event_id}/{unique('txn')}",
        {},
    )


def is_reaction(event: JsonDict, to: str, sender: str) -> bool:
    relates = event.get("content", {}).get("m.relates_to", {})
    return (
        event.get("type") == "m.reaction"
        and relates.get("event_id") == to
        and event.get("sender") == sender
    )


def test_each_author_sends_through_their_own_ghost(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    pair.alice.request(
        "PUT",
        f"/_matrix/client/v3/profile/{pair.alice.user_id}/avatar_url",
        {"avatar_url": AVATAR},
    )
    sent = pair.alice.send_message(pair.room_a, "Hello from A")
    pointer = wait_for_pointer(pair.bob, pair.room_b, sent)
    ghost = ghost_of(homeserver, pair.alice.user_id, pair.room_a)
    assert pointer["sender"] == ghost
    content = pointer["content"]
    # The sender is the person: no name in the text, no per-message profile.
    assert content["body"] == "Hello from A"
    assert PROFILE not in content
    assert content[POINTER]["sender"] == pair.alice.user_id
    room_name = pair.alice.get_state(pair.room_a, "m.room.name")["name"]
    shown = member(pair.bob, pair.room_b, ghost)
    assert shown["membership"] == "join"
    assert shown["displayname"] == f"Alice ({room_name})"
    assert shown["avatar_url"] == AVATAR

    # A second author in the same room gets a ghost of their own.
    carol = homeserver.register(unique("carol"), displayname="Carol")
    pair.alice.invite(pair.room_a, carol.user_id)
    carol.join(pair.room_a)
    second = carol.send_message(pair.room_a, "me too")
    other = wait_for_pointer(pair.bob, pair.room_b, second)
    assert other["sender"] == ghost_of(homeserver, carol.user_id, pair.room_a)
    assert other["sender"] != ghost
    assert member(pair.bob, pair.room_b, other["sender"])["displayname"] == f"Carol ({room_name})"

    # Edits come from the ghost that sent the pointer, as clients require.
    edit = send_edit(pair.alice, pair.room_a, sent, "Hello again from A")
    edit_in_b = pair.bob.wait_for_event(
        pair.room_b,
        lambda e: e.get("content", {}).get(POINTER, {}).get("event_id") == edit,
    )
    assert edit_in_b["sender"] == ghost
    assert edit_in_b["content"]["m.new_content"]["body"] == "Hello again from A"
    assert edit_in_b["content"]["m.relates_to"]["event_id"] == pointer["event_id"]


def test_ghost_follows_a_change_of_name(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    sent = pair.alice.send_message(pair.room_a, "before")
    ghost = wait_for_pointer(pair.bob, pair.room_b, sent)["sender"]
    room_name = pair.alice.get_state(pair.room_a, "m.room.name")["name"]
    pair.alice.send_state(
        pair.room_a,
        "m.room.member",
        pair.alice.user_id,
        {"membership": "join", "displayname": "Alicia"},
    )
    pair.bob.wait_for_event(
        pair.room_b,
        lambda e: (
            e.get("type") == "m.room.member"
            and e.get("state_key") == ghost
            and e.get("content", {}).get("displayname") == f"Alicia ({room_name})"
        ),
        timeout=60,
        description="the ghost's new name",
    )


def test_every_reactor_is_their_own_ghost(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    carol = homeserver.register(unique("carol"), displayname="Carol")
    pair.alice.invite(pair.room_a, carol.user_id)
    carol.join(pair.room_a)
    message = pair.bob.send_message(pair.room_b, "react to me")
    pointer = wait_for_pointer(pair.alice, pair.room_a, message)["event_id"]
    ghosts = [ghost_of(homeserver, u.user_id, pair.room_a) for u in (pair.alice, carol)]
    reactions = [react(u, pair.room_a, pointer, "👍") for u in (pair.alice, carol)]
    seen = [
        pair.bob.wait_for_event(pair.room_b, lambda e, g=g: is_reaction(e, message, g))
        for g in ghosts
    ]
    # Alice takes hers back: exactly her ghost's reaction goes.
    redact(pair.alice, pair.room_a, reactions[0])
    redaction = pair.bob.wait_for_event(pair.room_b, lambda e: e.get("type") == "m.room.redaction")
    assert redaction["redacts"] == seen[0]["event_id"]
    assert redaction["sender"] == ghosts[0]
    barrier(pair.alice, pair.room_a)
    barrier(pair.bob, pair.room_b)
    relations = pair.bob.request(
        "GET",
        f"/_matrix/client/v1/rooms/{pair.room_b}/relations/{message}/m.annotation",
    )["chunk"]
    assert [(e["sender"], e["content"]["m.relates_to"]["key"]) for e in relations] == [
        (ghosts[1], "👍")
    ]


def test_revocation_makes_the_ghosts_leave(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    sent = pair.alice.send_message(pair.room_a, "here")
    ghost = wait_for_pointer(pair.bob, pair.room_b, sent)["sender"]
    assert member(pair.bob, pair.room_b, ghost)["membership"] == "join"
    revoke(pair.alice, pair.room_a, pair.room_b)
    wait_for_membership(pair.bob, pair.room_b, ghost, "leave", timeout=60)

    # Connected again, an edit of what the ghost sent before brings it back.
    connect(pair.alice, pair.room_a, pair.room_b)
    wait_for_notice(pair.bob, pair.room_b, pair.bot, "now connected", timeout=60)
    edit = send_edit(pair.alice, pair.room_a, sent, "here again")
    edit_in_b = pair.bob.wait_for_event(
        pair.room_b,
        lambda e: e.get("content", {}).get(POINTER, {}).get("event_id") == edit,
        timeout=60,
    )
    assert edit_in_b["sender"] == ghost
    assert member(pair.bob, pair.room_b, ghost)["membership"] == "join"


def test_consent_can_ask_for_the_bot(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver, senders="bot")
    sent = pair.alice.send_message(pair.room_a, "through the bot")
    pointer = wait_for_pointer(pair.bob, pair.room_b, sent)
    assert pointer["sender"] == pair.bot
    assert pointer["content"]["body"] == "Alice: through the bot"
    assert pointer["content"][PROFILE]["id"] == pair.alice.user_id


def test_only_the_receiving_rooms_consent_decides(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    # B asks for the bot; A says nothing, so the server's default (ghosts) holds there.
    connect(pair.bob, pair.room_b, pair.room_a, senders="bot")
    into_b = pair.alice.send_message(pair.room_a, "into B")
    into_a = pair.bob.send_message(pair.room_b, "into A")
    assert wait_for_pointer(pair.bob, pair.room_b, into_b, timeout=60)["sender"] == pair.bot
    assert wait_for_pointer(pair.alice, pair.room_a, into_a)["sender"] == ghost_of(
        homeserver, pair.bob.user_id, pair.room_b
    )


def test_pointer_the_bot_sent_is_edited_by_the_bot_after_the_switch(
    homeserver: Homeserver,
) -> None:
    pair = connected_pair(homeserver, senders="bot")
    sent = pair.alice.send_message(pair.room_a, "old")
    old_pointer = wait_for_pointer(pair.bob, pair.room_b, sent)
    assert old_pointer["sender"] == pair.bot
    connect(pair.bob, pair.room_b, pair.room_a, senders="ghosts")
    fresh = pair.alice.send_message(pair.room_a, "new")
    assert wait_for_pointer(pair.bob, pair.room_b, fresh, timeout=60)["sender"] == ghost_of(
        homeserver, pair.alice.user_id, pair.room_a
    )
    edit = send_edit(pair.alice, pair.room_a, sent, "old, edited")
    edit_in_b = pair.bob.wait_for_event(
        pair.room_b,
        lambda e: e.get("content", {}).get(POINTER, {}).get("event_id") == edit,
    )
    assert edit_in_b["sender"] == pair.bot
    assert edit_in_b["content"]["m.relates_to"]["event_id"] == old_pointer["event_id"]
    assert edit_in_b["content"]["m.new_content"]["body"] == "Alice: old, edited"


def test_a_room_that_refuses_the_ghost_gets_the_bot_and_one_notice(
    homeserver: Homeserver,
) -> None:
    pair = connected_pair(homeserver)
    ghost = ghost_of(homeserver, pair.alice.user_id, pair.room_a)
    pair.bob.request(
        "POST",
        f"/_matrix/client/v3/rooms/{pair.room_b}/ban",
        {"user_id": ghost, "reason": "no stand-ins here"},
    )
    first = pair.alice.send_message(pair.room_a, "one")
    second = pair.alice.send_message(pair.room_a, "two")
    for sent in (first, second):
        pointer = wait_for_pointer(pair.bob, pair.room_b, sent)
        assert pointer["sender"] == pair.bot
        assert pointer["content"]["body"].startswith("Alice: ")
    barrier(pair.bob, pair.room_b)
    told = [n for n in notices_from(pair.bob, pair.room_b, pair.bot) if "stand-in" in n]
    assert len(told) == 1
    # Other authors' ghosts still get in.
    back = pair.bob.send_message(pair.room_b, "hello A")
    assert wait_for_pointer(pair.alice, pair.room_a, back)["sender"] == ghost_of(
        homeserver, pair.bob.user_id, pair.room_b
    )


def test_a_room_where_the_bot_may_not_invite_hears_the_bot(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)  # invite-only rooms: a ghost needs the bot's invite
    levels = pair.bob.get_state(pair.room_b, "m.room.power_levels")
    levels["invite"] = 100
    pair.bob.send_state(pair.room_b, "m.room.power_levels", "", levels)
    sent = pair.alice.send_message(pair.room_a, "can I come in?")
    pointer = wait_for_pointer(pair.bob, pair.room_b, sent)
    assert pointer["sender"] == pair.bot
    assert pointer["content"]["body"] == "Alice: can I come in?"
    wait_for_notice(pair.bob, pair.room_b, pair.bot, "could not join this room")
    ghost = ghost_of(homeserver, pair.alice.user_id, pair.room_a)
    with pytest.raises(MatrixError):
        member(pair.bob, pair.room_b, ghost)


def test_config_can_make_the_bot_the_default(make_homeserver: HomeserverFactory) -> None:
    hs = make_homeserver(module_config={"senders": "bot"})
    pair = connected_pair(hs)
    sent = pair.alice.send_message(pair.room_a, "bot by default")
    assert wait_for_pointer(pair.bob, pair.room_b, sent)["sender"] == pair.bot
    # A room's consent still gets ghosts when it asks.
    connect(pair.bob, pair.room_b, pair.room_a, senders="ghosts")
    fresh = pair.alice.send_message(pair.room_a, "now a ghost")
    assert wait_for_pointer(pair.bob, pair.room_b, fresh, timeout=60)["sender"] == ghost_of(
        hs, pair.alice.user_id, pair.room_a
    )


PREFIX = "stand-in."


@pytest.fixture(scope="module")
def reserved_hs(harness_dir: Any) -> Any:
    """A server whose ghost prefix Synapse itself would let anyone register
    (no leading underscore), counting monthly active users."""
    hs = Homeserver(
        harness_dir,
        name="hs-ghost-namespace",
        module_config={"ghost_localpart_prefix": PREFIX},
        config_overrides={"mau_stats_only": True},
    )
    try:
        hs.start()
        yield hs
    finally:
        hs.destroy()


@pytest.fixture(scope="module")
def ghosted(reserved_hs: Homeserver) -> tuple[Pair, str]:
    pair = connected_pair(reserved_hs)
    # Setting the ghost's avatar puts it in Synapse's user directory tables.
    pair.alice.request(
        "PUT",
        f"/_matrix/client/v3/profile/{pair.alice.user_id}/avatar_url",
        {"avatar_url": AVATAR},
    )
    sent = pair.alice.send_message(pair.room_a, "make me a ghost")
    ghost = wait_for_pointer(pair.bob, pair.room_b, sent)["sender"]
    assert ghost == ghost_of(reserved_hs, pair.alice.user_id, pair.room_a, PREFIX)
    return pair, ghost


def test_nobody_registers_in_the_ghost_namespace(reserved_hs: Homeserver) -> None:
    with pytest.raises(MatrixError) as refused:
        reserved_hs.register(PREFIX + unique("mallory"))
    assert refused.value.status == 429  # how Synapse answers a spam checker's refusal
    reserved_hs.register(unique("not-a-ghost"))  # anyone else still can


def test_nobody_logs_in_as_a_ghost(reserved_hs: Homeserver, ghosted: tuple[Pair, str]) -> None:
    _, ghost = ghosted
    admin = reserved_hs.register(unique("admin"), admin=True)
    # Even with a password an admin gave it, the login is refused.
    admin.request(
        "PUT",
        f"/_synapse/admin/v2/users/{ghost}",
        {"password": "correct horse battery staple", "logout_devices": False},
    )
    with pytest.raises(MatrixError) as refused:
        reserved_hs.client().request(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": ghost},
                "password": "correct horse battery staple",
            },
            authenticated=False,
        )
    assert refused.value.status == 403


def test_ghosts_stay_out_of_the_user_directory(
    reserved_hs: Homeserver, ghosted: tuple[Pair, str]
) -> None:
    pair, ghost = ghosted
    # Someone named alike joins B after the ghost did: once the directory
    # finds them, it has processed the ghost's join too.
    twin = reserved_hs.register(unique("twin"), displayname="Alice Twin")
    pair.bob.invite(pair.room_b, twin.user_id)
    twin.join(pair.room_b)
    for _ in range(120):
        found = pair.bob.request(
            "POST", "/_matrix/client/v3/user_directory/search", {"search_term": "Alice"}
        )["results"]
        if twin.user_id in [r["user_id"] for r in found]:
            break
        time.sleep(0.25)
    else:
        pytest.fail("the user directory never found a member of B")
    # Bob shares room B with the ghost: without the module's check it would be found.
    assert member(pair.bob, pair.room_b, ghost)["membership"] == "join"
    assert ghost not in [r["user_id"] for r in found]


def test_ghosts_are_not_monthly_active_users(
    reserved_hs: Homeserver, ghosted: tuple[Pair, str]
) -> None:
    pair, ghost = ghosted
    barrier(pair.bob, pair.room_b)
    with sqlite3.connect(reserved_hs.sqlite_path) as db:
        active = {row[0] for row in db.execute("SELECT user_id FROM monthly_active_users")}
    assert pair.alice.user_id in active  # counted: the table is kept on this server
    assert ghost not in active
