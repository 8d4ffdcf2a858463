"""The module's SQL on Synapse's own tables (synapse_compat/sql.py), run on
the schema the installed Synapse creates, with rows as Synapse writes them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from synapse_room_connect.store import Store
from synapse_room_connect.synapse_compat import sql

from .synapse_db import SqliteModuleApi, rows, transaction

BOT = "@room-connect:hs1"
ALICE, BOB = "@alice:hs1", "@bob:hs1"
A, B, C = "!a:hs1", "!b:hs1", "!c:hs1"


def test_timelines_after_reads_each_room_after_its_own_position(synapse_db: Path) -> None:
    with rows(synapse_db) as r:
        r.event(1, "$a1", A)
        r.event(2, "$b2", B)
        r.event(3, "$a3", A)
        r.event(4, "$bot4", A, sender=BOT)  # the bot's own: never carried
        r.event(5, "$outlier5", A, outlier=True)
        r.event(6, "$rejected6", B, rejected=True)
        r.event(7, "$c7", C)  # a room not asked about
        r.event(8, "$b8", B)
        r.event(9, "$a9", A)  # after upto
    with transaction(synapse_db) as txn:
        found = sql.timelines_after(txn, {A: 1, B: 0}, 8, 10, BOT)
    assert found == [(B, 2, "$b2"), (A, 3, "$a3"), (B, 8, "$b8")]


def test_timelines_after_stops_at_the_limit_oldest_first(synapse_db: Path) -> None:
    with rows(synapse_db) as r:
        for stream in range(1, 7):
            r.event(stream, f"$e{stream}", A if stream % 2 else B)
    with transaction(synapse_db) as txn:
        found = sql.timelines_after(txn, {A: 0, B: 0}, 6, 3, BOT)
    assert found == [(A, 1, "$e1"), (B, 2, "$e2"), (A, 3, "$e3")]


def test_state_changes_in_finds_state_of_the_types_asked(synapse_db: Path) -> None:
    kinds = {"m.room.connection", "m.room.encryption"}
    with rows(synapse_db) as r:
        r.event(1, "$early", A, type="m.room.connection", state_key=B)  # before A's position
        r.event(2, "$conn", A, type="m.room.connection", state_key=B, sender=BOT)
        r.event(3, "$not-state", A, type="m.room.encryption")  # no state key
        r.event(4, "$topic", A, type="m.room.topic", state_key="")
        r.event(5, "$enc", B, type="m.room.encryption", state_key="")
        r.event(6, "$rejected", B, type="m.room.encryption", state_key="", rejected=True)
        r.event(7, "$outlier", A, type="m.room.connection", state_key=C, outlier=True)
        r.event(8, "$late", B, type="m.room.connection", state_key=A)  # after upto
    with transaction(synapse_db) as txn:
        found = sql.state_changes_in(txn, {A: 1, B: 0}, kinds, 7)
    # Whoever sent them, the bot included.
    assert found == [(A, 2, "$conn"), (B, 5, "$enc")]


def test_state_changes_in_reads_more_rooms_than_one_query_takes(synapse_db: Path) -> None:
    rooms = [f"!r{n:04}:hs1" for n in range(sql.MAX_ROOMS_PER_READ + 5)]
    with rows(synapse_db) as r:
        for n, room in enumerate(rooms, start=1):
            r.event(n, f"$c{n}", room, type="m.room.connection", state_key=A)
    with transaction(synapse_db) as txn:
        found = sql.state_changes_in(txn, dict.fromkeys(rooms, 0), ["m.room.connection"], 10_000)
    assert [stream for _, stream, _ in found] == list(range(1, len(rooms) + 1))


def test_new_events_reads_every_room_with_memberships(synapse_db: Path) -> None:
    with rows(synapse_db) as r:
        r.event(1, "$before", A)
        r.event(2, "$join", A, type="m.room.member", state_key=BOB, sender=BOB, membership="join")
        r.event(3, "$msg", B)
        r.event(4, "$outlier", A, outlier=True)
        r.event(5, "$rejected", B, rejected=True)
        r.event(6, "$bot", C, sender=BOT)  # every sender, the bot's too
        r.event(7, "$after", A)
    with transaction(synapse_db) as txn:
        found = sql.new_events(txn, 1, 6, 10)
        limited = sql.new_events(txn, 1, 6, 2)
    assert found == [
        (2, "$join", A, "m.room.member", BOB, BOB, "join"),
        (3, "$msg", B, "m.room.message", ALICE, None, None),
        (6, "$bot", C, "m.room.message", BOT, None, None),
    ]
    assert limited == found[:2]


def test_sent_transactions_finds_the_device_s_own(synapse_db: Path) -> None:
    with rows(synapse_db) as r:
        r.device(BOT, "FERRY")
        r.device(BOT, "OTHER")
        r.device(ALICE, "FERRY")
        r.event(1, "$p1", A, sender=BOT)
        r.event(2, "$p2", B, sender=BOT)
        r.event(3, "$other-device", A, sender=BOT)
        r.event(4, "$alice", A)
        r.transaction_id(A, "t1", "$p1", BOT, "FERRY")
        r.transaction_id(B, "t2", "$p2", BOT, "FERRY")
        r.transaction_id(A, "t3", "$other-device", BOT, "OTHER")
        r.transaction_id(A, "t4", "$alice", ALICE, "FERRY")
    wanted = {(A, "t1"), (B, "t2"), (A, "t3"), (A, "t4"), (A, "t2"), (C, "t1")}
    with transaction(synapse_db) as txn:
        found = sql.sent_transactions(txn, "FERRY", {(r, t, BOT) for r, t in wanted})
    assert found == {(A, "t1"): "$p1", (B, "t2"): "$p2"}


def test_sent_transactions_reads_more_triples_than_one_query_takes(synapse_db: Path) -> None:
    count = sql.MAX_ROOMS_PER_READ * 2 + 3
    with rows(synapse_db) as r:
        r.device(BOT, "FERRY")
        for n in range(count):
            r.event(n + 1, f"$p{n}", A, sender=BOT)
            r.transaction_id(A, f"t{n}", f"$p{n}", BOT, "FERRY")
    with transaction(synapse_db) as txn:
        found = sql.sent_transactions(txn, "FERRY", {(A, f"t{n}", BOT) for n in range(count)})
    assert found == {(A, f"t{n}"): f"$p{n}" for n in range(count)}


def test_command_candidates_are_the_newest_matching_messages_in_the_bot_s_rooms(
    synapse_db: Path,
) -> None:
    like = "%!connect%"
    command = {"msgtype": "m.text", "body": "!connect #b:hs1"}
    with rows(synapse_db) as r:
        for stream, room, membership in ((1, A, "join"), (2, B, "invite"), (3, C, "leave")):
            event_id = f"$member-{stream}"
            r.event(
                stream,
                event_id,
                room,
                type="m.room.member",
                state_key=BOT,
                sender=BOT,
                membership=membership,
            )
            r.local_membership(stream, event_id, room, BOT, membership)
        r.event(4, "$too-early", A, content=command, ts=500)
        r.event(5, "$cmd5", A, content=command)
        r.event(6, "$chat", A, content={"msgtype": "m.text", "body": "hello"})
        r.event(7, "$cmd7", B, content=command)  # invited: answered
        r.event(8, "$left", C, content=command)  # the bot left: not
        r.event(9, "$by-bot", A, content=command, sender=BOT)
        r.event(10, "$notice-type", A, content=command, type="m.notice")
        r.event(11, "$rejected", A, content=command, rejected=True)
        r.event(12, "$outlier", A, content=command, outlier=True)
        r.event(13, "$cmd13", B, content=command)
        r.event(14, "$after", A, content=command)
    with transaction(synapse_db) as txn:
        every = sql.command_candidates(txn, BOT, 3, 13, 1000, like, 10)
        newest = sql.command_candidates(txn, BOT, 3, 13, 1000, like, 2)
    assert every == [(5, "$cmd5"), (7, "$cmd7"), (13, "$cmd13")]
    # The newest ones, oldest first: a backlog is cut at its old end.
    assert newest == [(7, "$cmd7"), (13, "$cmd13")]


def test_pointer_tallies_count_per_direction_with_the_newest_time(
    synapse_db: Path, db_api: SqliteModuleApi
) -> None:
    # The module's own tables, beside Synapse's.
    asyncio.run(Store(db_api.as_module_api()).migrate())
    with rows(synapse_db) as r:
        r.event(1, "$p1", B, sender=BOT, ts=1500)
        r.event(2, "$p2", B, sender=BOT, ts=2500)
        r.event(3, "$p3", B, sender=BOT, ts=2000)
    pointers = [
        (A, "$o1", B, "$p1"),
        (A, "$o2", B, "$p2"),
        (C, "$o3", B, "$p3"),
        (A, "$o4", C, "$gone"),  # a pointer event this server no longer holds
        (B, "$o5", A, "$p5"),  # into a room not asked about
    ]
    with transaction(synapse_db) as txn:
        txn.execute_batch(
            "INSERT INTO room_connect_pointers"
            " (source_room_id, source_event_id, target_room_id, pointer_event_id)"
            " VALUES (?, ?, ?, ?)",
            pointers,
        )
    with transaction(synapse_db) as txn:
        found = sorted(sql.pointer_tallies(txn, [B, C]))
    assert found == [(A, B, 2, 2500), (A, C, 1, None), (C, B, 1, 2000)]
