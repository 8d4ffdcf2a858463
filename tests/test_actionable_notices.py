"""Notices a person can act on, on real homeservers: rooms named by alias or
name, a request the bot cannot carry explained with what to do, and a command
sent while the acting process was down answered once after it restarts."""

from __future__ import annotations

from pathlib import Path

from harness import PostgresServer, RedisServer, WorkerDeployment
from harness.client import JsonDict, MatrixClient
from harness.connect_api import connect, unique, wait_for_membership, wait_for_notice
from harness.ferry_helpers import all_events
from harness.synapse import Homeserver
from harness.workers import CLIENT_WORKER


def bot_of(server: Homeserver | WorkerDeployment) -> str:
    bot: str = server.info()["bot_user_id"]
    return bot


def replies_to(client: MatrixClient, room_id: str, bot: str, event_id: str) -> list[JsonDict]:
    return [
        e
        for e in all_events(client, room_id)
        if e.get("sender") == bot
        and e.get("content", {}).get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
        == event_id
    ]


def bot_and_two_users(server: Homeserver) -> tuple[str, MatrixClient, MatrixClient]:
    """The server's ferry bot, and two new users: Alice and Bob."""
    return bot_of(server), server.register(unique("alice")), server.register(unique("bob"))


def aliased_room(server: Homeserver, client: MatrixClient, **body: object) -> tuple[str, str]:
    """A new room with a fresh canonical alias; returns (room ID, alias)."""
    alias_part = unique("room")
    room_id = client.create_room(room_alias_name=alias_part, **body)
    return room_id, f"#{alias_part}:{server.server_name}"


def test_rooms_are_named_by_alias_or_name_and_an_uninvited_bot_says_what_to_do(
    homeserver: Homeserver,
) -> None:
    bot, alice, bob = bot_and_two_users(homeserver)
    room_a, alias = aliased_room(homeserver, alice, name="Portal")
    b_name = unique("Native room")
    # Private (invite-only) and without an alias: named by its name.
    room_b = bob.create_room(name=b_name)

    connect(alice, room_a, room_b)
    content = wait_for_notice(alice, room_a, bot, "Requested a connection")["content"]
    notice = content["body"]
    b_label = f'"{b_name}" ({room_b})'
    assert notice.startswith(f"Requested a connection from this room to {b_label}, but ")
    assert f"I ({bot}) cannot join {b_label}: it is invite-only" in notice
    # The plain body reads without markdown marks; the HTML shows the command as code.
    assert f"An admin there must invite {bot}, then run !connect approve {alias} in" in notice
    assert "`" not in notice
    assert content["format"] == "org.matrix.custom.html"
    assert f"then run <code>!connect approve {alias}</code> in" in content["formatted_body"]

    # Doing what the notice says connects the rooms, and every text names A by its alias.
    bob.invite(room_b, bot)
    wait_for_membership(bob, room_b, bot, "join")
    command = bob.send_message(room_b, f"!connect approve {alias}")
    reply = wait_for_notice(bob, room_b, bot, "Connected to")
    assert reply["content"]["body"] == f"Connected to {alias}."
    assert reply["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == command
    wait_for_notice(bob, room_b, bot, f"now connected to {alias};")
    wait_for_notice(alice, room_a, bot, f"now connected to {b_label};")
    listing = alice.send_message(room_a, "!connect list")
    wait_for_notice(alice, room_a, bot, "Connections of this room")
    [answer] = replies_to(alice, room_a, bot, listing)
    assert answer["content"]["body"] == f"Connections of this room:\n- {b_label}: active (ferry)"


def test_the_asked_room_is_told_to_approve_the_asking_room_by_its_alias(
    homeserver: Homeserver,
) -> None:
    bot, alice, bob = bot_and_two_users(homeserver)
    room_a, alias = aliased_room(homeserver, alice, preset="public_chat")
    # Public, so the bot can enter it to tell its admins about the request.
    room_b = bob.create_room(preset="public_chat")

    connect(alice, room_a, room_b)
    body = wait_for_notice(bob, room_b, bot, "asks to connect")["content"]["body"]
    assert body.startswith(f"{alias} asks to connect to this room.")
    assert body.endswith(f"can approve with !connect approve {alias}.")


def test_a_request_to_an_unreachable_server_says_so(homeserver: Homeserver) -> None:
    bot = bot_of(homeserver)
    alice = homeserver.register(unique("alice"))
    room_a = alice.create_room(name=unique("Lonely"))
    # Nothing listens on port 1: the other room's server cannot be reached.
    nowhere = "!nowhere:localhost:1"

    connect(alice, room_a, nowhere)
    notice = wait_for_notice(alice, room_a, bot, "Requested a connection", timeout=90)
    body = notice["content"]["body"]
    assert f"I ({bot}) cannot reach {nowhere}: its server did not answer" in body
    assert f"run !connect approve {room_a} in that room" in body
    assert "invite-only" not in body


def test_a_private_room_on_another_server_is_told_apart_from_an_unreachable_one(
    federation: tuple[Homeserver, Homeserver],
) -> None:
    hs1, hs2 = federation
    bot = bot_of(hs1)
    alice = hs1.register(unique("alice"))
    bob = hs2.register(unique("bob"))
    alias_part = unique("asking")
    room_a = alice.create_room(name="Asking", room_alias_name=alias_part)
    room_b = bob.create_room(name=unique("Private"))

    connect(alice, room_a, room_b, via=[hs2.server_name])
    body = wait_for_notice(alice, room_a, bot, "Requested a connection", timeout=60)["content"][
        "body"
    ]
    # hs1 is in no part of B, so its ID is all it knows of it.
    assert f"I ({bot}) cannot join {room_b}: it is invite-only" in body
    assert f"run !connect approve #{alias_part}:{hs1.server_name} in" in body
    assert "cannot reach" not in body

    # Doing what it says: once invited over federation, the bot brings the
    # request into B with the command that approves it.
    bob.invite(room_b, bot)
    asks = wait_for_notice(bob, room_b, bot, "asks to connect", timeout=60)["content"]["body"]
    assert asks.endswith(f"can approve with !connect approve #{alias_part}:{hs1.server_name}.")


def test_a_command_sent_while_the_acting_worker_is_down_is_answered_once(
    harness_dir: Path, postgres: PostgresServer, redis: RedisServer
) -> None:
    """The acting process is the client worker; main keeps accepting messages
    while it is stopped. After it restarts the command is answered, and a
    second restart does not answer it again."""
    deployment = WorkerDeployment(
        postgres, redis, {"worker": CLIENT_WORKER}, base_dir=harness_dir, name="commands-down"
    )
    try:
        deployment.start()
        bot = bot_of(deployment)
        alice = deployment.register(unique("alice")).with_base_url(deployment.main_client_url)
        room = alice.create_room(name=unique("Commands"))
        alice.invite(room, bot)
        wait_for_membership(alice, room, bot, "join")

        worker = deployment.client_worker
        worker.stop()
        command = alice.send_message(room, "!connect list")
        assert replies_to(alice, room, bot, command) == []

        worker.start()
        answer = wait_for_notice(alice, room, bot, "This room has no connections.")
        assert answer["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == command

        worker.stop()
        worker.start()
        # A command after the restart is answered after anything the
        # catch-up replays, so once it is answered the first is settled.
        later = alice.send_message(room, "!connect help")
        wait_for_notice(alice, room, bot, "Room connections (MSC2923)")
        assert len(replies_to(alice, room, bot, later)) == 1
        assert len(replies_to(alice, room, bot, command)) == 1
        log = deployment.log_text(CLIENT_WORKER)
        assert log.count("Answering 1 command(s) sent while this process was down") == 1
        assert "Answering" not in deployment.log_text("main")
    finally:
        deployment.destroy()
