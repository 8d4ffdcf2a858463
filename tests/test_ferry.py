"""Pointer events on one homeserver: content, relations, exactly once, limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.client import JsonDict
from harness.connect_api import (
    connect,
    connections,
    metric_value,
    metrics_text,
    revoke,
    unique,
    wait_for_notice,
)
from harness.ferry_helpers import (
    POINTER,
    PROFILE,
    all_events,
    barrier,
    connected_pair,
    is_pointer_to,
    pointers_in,
    send_edit,
    wait_for_pointer,
)
from harness.synapse import Homeserver, HomeserverFactory
from synapse_room_connect.constants import DEFAULT_GHOST_LOCALPART_PREFIX
from synapse_room_connect.core.ghosts import GhostNamespace

ORIGINAL = "org.matrix.msc2923.original"


def test_messages_cross_both_ways_as_pointers(homeserver: Homeserver) -> None:
    # Where a room asks the bot to send, the text and the profile name the author.
    pair = connected_pair(homeserver, senders="bot")
    sent = pair.alice.send_message(pair.room_a, "Hello <b>from</b> A")
    pointer = wait_for_pointer(pair.bob, pair.room_b, sent)
    content = pointer["content"]
    assert pointer["sender"] == pair.bot
    assert content[POINTER]["room_id"] == pair.room_a
    assert content[POINTER]["sender"] == pair.alice.user_id
    assert isinstance(content[POINTER]["origin_server_ts"], int)
    assert content["msgtype"] == "m.text"
    assert content["body"] == "Alice: Hello <b>from</b> A"
    assert content["formatted_body"] == (
        "<span data-mx-profile-fallback>Alice:</span> Hello &lt;b&gt;from&lt;/b&gt; A"
    )
    assert content[PROFILE] == {
        "id": pair.alice.user_id,
        "displayname": "Alice",
        "has_fallback": True,
    }

    back = pair.bob.send_message(pair.room_b, "hi", msgtype="m.emote")
    emote = wait_for_pointer(pair.alice, pair.room_a, back)["content"]
    assert (emote["msgtype"], emote["body"]) == ("m.emote", "Bob hi")

    image = pair.alice.send_event(
        pair.room_a,
        "m.room.message",
        {"msgtype": "m.image", "body": "cat.png", "url": "mxc://example.org/cat", "info": {"w": 4}},
    )
    media = wait_for_pointer(pair.bob, pair.room_b, image)["content"]
    assert (media["msgtype"], media["url"], media["info"]) == (
        "m.image",
        "mxc://example.org/cat",
        {"w": 4},
    )


def test_only_events_while_active_are_ferried(homeserver: Homeserver) -> None:
    bot = homeserver.info()["bot_user_id"]
    alice = homeserver.register(unique("alice"))
    bob = homeserver.register(unique("bob"))
    room_a, room_b = alice.create_room(), bob.create_room()
    connect(alice, room_a, room_b)
    early = alice.send_message(room_a, "before approval")
    connect(bob, room_b, room_a)
    wait_for_notice(bob, room_b, bot, "now connected")
    during = alice.send_message(room_a, "while active")
    wait_for_pointer(bob, room_b, during)

    revoke(bob, room_b, room_a)
    wait_for_notice(alice, room_a, bot, "has ended")
    late = alice.send_message(room_a, "after revocation")
    barrier(alice, room_a)
    barrier(bob, room_b)
    originals = {p["content"][POINTER]["event_id"] for p in pointers_in(bob, room_b)}
    assert originals == {during}
    assert early not in originals
    assert late not in originals

    # Connected again: what was said while revoked stays on its side.
    connect(bob, room_b, room_a)
    assert connect(alice, room_a, room_b)["status"] == "active"
    again = alice.send_message(room_a, "connected again")
    wait_for_pointer(bob, room_b, again)
    originals = {p["content"][POINTER]["event_id"] for p in pointers_in(bob, room_b)}
    assert originals == {during, again}


def test_replies_edits_reactions_redactions_and_threads(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    alice, bob = pair.alice, pair.bob
    question = alice.send_message(pair.room_a, "question?")
    question_in_b = wait_for_pointer(bob, pair.room_b, question)["event_id"]

    # Bob replies to the pointer: in A it becomes a reply to the original.
    answer = bob.send_message(
        pair.room_b, "answer!", **{"m.relates_to": {"m.in_reply_to": {"event_id": question_in_b}}}
    )
    answer_in_a = wait_for_pointer(alice, pair.room_a, answer)
    assert answer_in_a["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": question}}

    # Alice edits her original: her ghost edits its pointer in B.
    edit = send_edit(alice, pair.room_a, question, "question, edited?")
    namespace = GhostNamespace(DEFAULT_GHOST_LOCALPART_PREFIX, homeserver.server_name)
    alice_ghost = namespace.user_id_for(alice.user_id or "", pair.room_a)

    def is_edit(event: JsonDict) -> bool:
        return event.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace"

    edit_in_b = bob.wait_for_event(pair.room_b, lambda e: is_edit(e) and is_pointer_to(e, edit))
    assert edit_in_b["sender"] == alice_ghost
    assert edit_in_b["content"]["m.relates_to"]["event_id"] == question_in_b
    assert edit_in_b["content"]["m.new_content"]["body"] == "question, edited?"

    # Bob reacts to the pointer: his ghost reacts to the original in A.
    bob.send_event(
        pair.room_b,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": question_in_b, "key": "👍"}},
    )
    reaction = alice.wait_for_event(pair.room_a, lambda e: e.get("type") == "m.reaction")
    assert reaction["sender"] == namespace.user_id_for(bob.user_id or "", pair.room_b)
    assert reaction["content"]["m.relates_to"] == {
        "rel_type": "m.annotation",
        "event_id": question,
        "key": "👍",
    }

    # A thread reply stays in the mapped thread.
    in_thread = alice.send_message(
        pair.room_a,
        "in thread",
        **{
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": question,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": question},
            }
        },
    )
    thread_in_b = wait_for_pointer(bob, pair.room_b, in_thread)
    assert thread_in_b["content"]["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": question_in_b,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": question_in_b},
    }

    # Alice redacts her original: her ghost redacts the pointer in B too.
    alice.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{pair.room_a}/redact/{question}/{unique('txn')}",
        {"reason": "oops"},
    )
    redaction = bob.wait_for_event(
        pair.room_b,
        lambda e: e.get("type") == "m.room.redaction" and e.get("sender") == alice_ghost,
    )
    assert redaction["redacts"] == question_in_b or redaction["content"]["redacts"] == question_in_b


def test_three_room_mesh_delivers_each_message_once_everywhere(homeserver: Homeserver) -> None:
    bot = homeserver.info()["bot_user_id"]
    users = [homeserver.register(unique(n), displayname=n) for n in ("ann", "ben", "cat")]
    rooms = [u.create_room(name=unique("mesh")) for u in users]
    for i in range(3):
        for j in range(i + 1, 3):
            connect(users[i], rooms[i], rooms[j])
            assert connect(users[j], rooms[j], rooms[i])["status"] == "active"
    wait_for_notice(users[2], rooms[2], bot, "now connected")
    sent = {i: users[i].send_message(rooms[i], f"from room {i}") for i in range(3)}
    for i in range(3):
        for j in range(3):
            if i != j:
                wait_for_pointer(users[j], rooms[j], sent[i])
    for j in range(3):
        barrier(users[j], rooms[j])
    for j in range(3):
        originals = [p["content"][POINTER]["event_id"] for p in pointers_in(users[j], rooms[j])]
        for i in range(3):
            assert originals.count(sent[i]) == (0 if i == j else 1)


def test_placeholder_mode(make_homeserver: HomeserverFactory) -> None:
    hs = make_homeserver(module_config={"fallback_mode": "placeholder"})
    pair = connected_pair(hs)
    secret = pair.alice.send_message(pair.room_a, "the secret plan")
    content = wait_for_pointer(pair.bob, pair.room_b, secret)["content"]
    assert "secret plan" not in content["body"]
    assert content["body"].startswith(f"Alice wrote in {pair.room_a}")
    assert f"https://matrix.to/#/{pair.room_a}/{secret}" in content["body"]
    assert content[POINTER]["event_id"] == secret


def test_state_events_are_ferried_only_when_configured(
    make_homeserver: HomeserverFactory,
) -> None:
    hs = make_homeserver(module_config={"ferry_state_events": ["m.room.topic"]})
    pair = connected_pair(hs)
    topic = pair.alice.send_state(pair.room_a, "m.room.topic", "", {"topic": "Release day"})
    renamed = pair.alice.send_state(pair.room_a, "m.room.name", "", {"name": "Not carried"})
    pointer = wait_for_pointer(pair.bob, pair.room_b, topic)
    assert pointer["sender"] == pair.bot
    assert pointer["content"]["msgtype"] == "m.notice"
    assert pointer["content"]["body"] == f"Alice changed the topic of {pair.room_a} to: Release day"
    # Vouched for by the connection, so B's members see the state event itself.
    original = pointer["unsigned"][ORIGINAL]
    assert (original["type"], original["content"]) == ("m.room.topic", {"topic": "Release day"})
    # A message after both, crossed: nothing before it is still to come.
    wait_for_pointer(pair.bob, pair.room_b, pair.alice.send_message(pair.room_a, "after"))
    barrier(pair.bob, pair.room_b)
    originals = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    assert topic in originals
    assert renamed not in originals
    # Memberships are never carried: Carol joining A leaves no trace in B.
    carol = hs.register(unique("carol"))
    pair.alice.invite(pair.room_a, carol.user_id or "")
    carol.join(pair.room_a)
    wait_for_pointer(pair.bob, pair.room_b, pair.alice.send_message(pair.room_a, "later"))
    barrier(pair.bob, pair.room_b)
    assert len(pointers_in(pair.bob, pair.room_b)) == len(originals) + 1  # Alice's "later"


def test_encrypted_connection_ferries_nothing(homeserver: Homeserver) -> None:
    encryption = {
        "type": "m.room.encryption",
        "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
    }
    bot = homeserver.info()["bot_user_id"]
    alice = homeserver.register(unique("alice"))
    bob = homeserver.register(unique("bob"))
    room_a = alice.create_room(initial_state=[encryption])
    room_b = bob.create_room(initial_state=[encryption])
    connect(alice, room_a, room_b)
    assert connect(bob, room_b, room_a)["mode"] == "client_fanout"
    wait_for_notice(bob, room_b, bot, "clients send to both themselves")
    alice.send_event(
        room_a, "m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}
    )
    alice.send_message(room_a, "plaintext in an encrypted room")
    barrier(alice, room_a)
    barrier(bob, room_b)
    assert pointers_in(bob, room_b) == []


@pytest.mark.parametrize("pattern", [r"@bridge-.*"])
def test_ignored_senders_are_not_ferried(make_homeserver: HomeserverFactory, pattern: str) -> None:
    hs = make_homeserver(module_config={"ignore_users": [pattern]})
    pair = connected_pair(hs)
    bridge = hs.register(unique("bridge"))
    pair.alice.invite(pair.room_a, bridge.user_id or "")
    bridge.join(pair.room_a)
    ignored = bridge.send_message(pair.room_a, "relayed by a bridge")
    carried = pair.alice.send_message(pair.room_a, "said by alice")
    wait_for_pointer(pair.bob, pair.room_b, carried)
    originals = {p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)}
    assert ignored not in originals


def test_ferry_metrics(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    ferried = "synapse_room_connect_ferried_events_total"
    before = metric_value(homeserver, ferried, kind="message")
    latency_before = metric_value(homeserver, "synapse_room_connect_ferry_latency_seconds_count")
    sent = pair.alice.send_message(pair.room_a, "count me")
    wait_for_pointer(pair.bob, pair.room_b, sent)
    assert metric_value(homeserver, ferried, kind="message") == before + 1
    assert metric_value(homeserver, "synapse_room_connect_ferry_latency_seconds_count") == (
        latency_before + 1
    )
    assert "synapse_room_connect_ferry_queue_depth{" in metrics_text(homeserver)


def test_turning_on_encryption_pauses_an_unacknowledged_connection(homeserver: Homeserver) -> None:
    pair = connected_pair(homeserver)
    before = pair.alice.send_message(pair.room_a, "still plaintext")
    wait_for_pointer(pair.bob, pair.room_b, before)
    pair.alice.send_state(
        pair.room_a, "m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"}
    )
    for client, room in ((pair.alice, pair.room_a), (pair.bob, pair.room_b)):
        wait_for_notice(client, room, pair.bot, "is paused: one room is end-to-end encrypted")
    view = connections(pair.bob, pair.room_b)[pair.room_a]
    assert (view["status"], view["blocked_by"]) == ("requested", ["encryption_mismatch"])
    after = pair.alice.send_message(pair.room_a, "a client that ignores encryption")
    barrier(pair.alice, pair.room_a)
    barrier(pair.bob, pair.room_b)
    originals = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    assert before in originals
    assert after not in originals


def test_turning_on_encryption_switches_an_acknowledged_connection_to_fanout(
    homeserver: Homeserver,
) -> None:
    bot = homeserver.info()["bot_user_id"]
    alice = homeserver.register(unique("alice"))
    bob = homeserver.register(unique("bob"))
    room_a, room_b = alice.create_room(), bob.create_room()
    ack = ["encryption_mismatch"]
    connect(alice, room_a, room_b, acknowledge=ack)
    assert connect(bob, room_b, room_a, acknowledge=ack)["mode"] == "ferry"
    wait_for_notice(bob, room_b, bot, "now connected")
    alice.send_state(room_a, "m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"})
    for client, room in ((alice, room_a), (bob, room_b)):
        wait_for_notice(client, room, bot, "End-to-end encryption is now on")
    view = connections(bob, room_b)[room_a]
    assert (view["status"], view["mode"]) == ("active", "client_fanout")
    after = alice.send_message(room_a, "not ferried any more")
    barrier(alice, room_a)
    barrier(bob, room_b)
    originals = [p["content"][POINTER]["event_id"] for p in pointers_in(bob, room_b)]
    assert after not in originals


def test_a_burst_with_relations_is_carried_in_batches(homeserver: Homeserver) -> None:
    """Four senders at once outpace one pointer at a time, so the ferry sends
    pointers in batches; replies, edits, reactions and redactions of events
    whose pointers are in the same batch must still map."""
    pair = connected_pair(homeserver)
    senders = [pair.alice]
    for name in ("Carol", "Dave", "Erin"):
        user = homeserver.register(unique(name.lower()), displayname=name)
        pair.alice.invite(pair.room_a, user.user_id)
        user.join(pair.room_a)
        senders.append(user)
    batches = "synapse_room_connect_ferry_batch_size_count"
    batches_before = metric_value(homeserver, batches)
    roots = [pair.alice.send_message(pair.room_a, f"root {i}") for i in range(4)]

    def burst(n: int) -> list[tuple[str, str, int]]:
        """(kind, event ID, root index) of what one sender sent."""
        client = senders[n]
        sent = []
        for i in range(10):
            root = (n + i) % len(roots)
            relates = {"m.in_reply_to": {"event_id": roots[root]}}
            reply = client.send_message(pair.room_a, f"reply {n}.{i}", **{"m.relates_to": relates})
            sent.append(("reply", reply, root))
            if i % 3 == 0:
                # Everyone reacts with the same key: each reactor's ghost reacts.
                client.send_event(
                    pair.room_a,
                    "m.reaction",
                    {
                        "m.relates_to": {
                            "rel_type": "m.annotation",
                            "event_id": roots[root],
                            "key": "+1",
                        }
                    },
                )
            if i % 4 == 0:
                sent.append(("edit", send_edit(client, pair.room_a, reply, f"edited {n}.{i}"), -1))
        return sent

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [event for part in pool.map(burst, range(4)) for event in part]
    # A redaction of one reply, once its pointer is there.
    first_reply = results[0][1]
    first_pointer = wait_for_pointer(pair.bob, pair.room_b, first_reply)["event_id"]
    pair.alice.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{pair.room_a}/redact/{first_reply}/{unique('txn')}",
        {},
    )
    barrier(pair.alice, pair.room_a)
    root_pointers = {
        wait_for_pointer(pair.bob, pair.room_b, root)["event_id"]: n for n, root in enumerate(roots)
    }
    for kind, event_id, root in results[1:]:
        pointer = wait_for_pointer(pair.bob, pair.room_b, event_id)
        relates = pointer["content"]["m.relates_to"]
        if kind == "reply":
            assert root_pointers[relates["m.in_reply_to"]["event_id"]] == root
        else:
            assert relates["rel_type"] == "m.replace"
    barrier(pair.bob, pair.room_b)
    events_b = list(all_events(pair.bob, pair.room_b))
    reactions = [e for e in events_b if e.get("type") == "m.reaction"]
    # Each of the four senders reacted once to each root: every reactor counts.
    assert sorted(root_pointers[r["content"]["m.relates_to"]["event_id"]] for r in reactions) == (
        [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    )
    ghosts = {
        GhostNamespace(DEFAULT_GHOST_LOCALPART_PREFIX, homeserver.server_name).user_id_for(
            s.user_id or "", pair.room_a
        )
        for s in senders
    }
    assert {r["sender"] for r in reactions} == ghosts
    redactions = [e for e in events_b if e.get("type") == "m.room.redaction"]
    assert [r.get("redacts") or r["content"]["redacts"] for r in redactions] == [first_pointer]
    # Each original once, and the burst really was carried in batches.
    originals = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    replies = [event_id for kind, event_id, _ in results[1:] if kind == "reply"]
    assert sorted(o for o in originals if o in replies) == sorted(replies)
    pointers = len(roots) + len(results) + len(reactions) + len(redactions)
    assert metric_value(homeserver, batches) - batches_before < pointers


def test_an_event_that_cannot_cross_holds_back_nothing_after_it(homeserver: Homeserver) -> None:
    """B allows no reactions from the bot: the ferry retries, gives up with a
    log line and a metric, and the messages around the reaction still cross."""
    pair = connected_pair(homeserver)
    levels = pair.bob.get_state(pair.room_b, "m.room.power_levels")
    levels["events"] = {**levels.get("events", {}), "m.reaction": 100}
    pair.bob.send_state(pair.room_b, "m.room.power_levels", "", levels)
    failures = "synapse_room_connect_ferry_failures_total"
    failures_before = metric_value(homeserver, failures)
    first = pair.alice.send_message(pair.room_a, "before the reaction")
    pair.alice.send_event(
        pair.room_a,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "+1"}},
    )
    after = pair.alice.send_message(pair.room_a, "after the reaction")
    wait_for_pointer(pair.bob, pair.room_b, first)
    wait_for_pointer(pair.bob, pair.room_b, after)
    # Five attempts, a second apart, came before the message after it.
    assert metric_value(homeserver, failures) - failures_before == 5
    events_b = list(all_events(pair.bob, pair.room_b))
    assert not [e for e in events_b if e.get("type") == "m.reaction"]
    assert "Giving up ferrying" in homeserver.log_text()


def test_a_message_too_long_to_copy_crosses_cut_with_the_whole_in_the_expansion(
    homeserver: Homeserver,
) -> None:
    pair = connected_pair(homeserver)
    text = "long line\n" * 5_000  # 50 KB: a copy in body and formatted_body would not fit
    long = pair.alice.send_message(pair.room_a, text)
    pointer = wait_for_pointer(pair.bob, pair.room_b, long)
    assert pointer["content"]["body"].startswith("long line\nlong line")
    assert pointer["content"]["body"].endswith(" […]")
    assert pointer["unsigned"][ORIGINAL]["content"]["body"] == text


def test_a_user_the_target_room_bans_is_not_carried_there(homeserver: Homeserver) -> None:
    """B's moderators ban a user of A who was never in B: their messages stop
    crossing into B, and the ferry says so in a metric and a log line."""
    pair = connected_pair(homeserver)
    carol = homeserver.register(unique("carol"), displayname="Carol")
    pair.alice.invite(pair.room_a, carol.user_id or "")
    carol.join(pair.room_a)
    withheld = "synapse_room_connect_ferry_withheld_total"
    before = metric_value(homeserver, withheld, reason="ban")
    pair.bob.request(
        "POST",
        f"/_matrix/client/v3/rooms/{pair.room_b}/ban",
        {"user_id": carol.user_id, "reason": "spam"},
    )
    banned = carol.send_message(pair.room_a, "from a user B has banned")
    carried = pair.alice.send_message(pair.room_a, "from alice")
    # In order: once Alice's later message has crossed, Carol's was decided.
    wait_for_pointer(pair.bob, pair.room_b, carried)
    originals = [p["content"][POINTER]["event_id"] for p in pointers_in(pair.bob, pair.room_b)]
    assert banned not in originals
    assert metric_value(homeserver, withheld, reason="ban") == before + 1
    assert f"Not ferrying {banned}" in homeserver.log_text()
    # Still carried the other way: the ban is B's, not A's.
    from_bob = pair.bob.send_message(pair.room_b, "to everyone in A, Carol too")
    wait_for_pointer(carol, pair.room_a, from_bob)
