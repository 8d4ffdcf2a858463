"""The fan-out client on two federating homeservers with real end-to-end encryption.

Room A (hs1: alice, carol) and room B (hs2: bob; alice joined) are both
encrypted from creation and connected with hs1's ferry; the server carries
nothing (mode ``client_fanout``). Alice fans out with the reference client
(matrix-nio, real Olm/Megolm); carol and bob read with nio clients of their own.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from harness.client import JsonDict, MatrixClient, register_with_shared_secret
from harness.connect_api import (
    CONNECTION,
    connect,
    connections,
    unique,
    wait_for_membership,
    wait_for_notice,
)
from harness.ferry_helpers import POINTER, all_events
from harness.synapse import Homeserver
from synapse_room_connect.fanout.__main__ import main as fanout_cli
from synapse_room_connect.fanout.client import FanoutClient
from synapse_room_connect.fanout.mapping import CopyMap
from synapse_room_connect.fanout.merge import TimelineEntry, merge_timeline
from synapse_room_connect.fanout.protocol import FANOUT_KEY, tag_of

pytestmark = pytest.mark.federation

T = TypeVar("T")

ENCRYPTION_STATE = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


@attrs.frozen
class User:
    hs: Homeserver
    http: MatrixClient  # its own device, for raw client-server calls
    password: str
    store: Path  # the nio client's store directory

    @property
    def user_id(self) -> str:
        assert self.http.user_id is not None
        return self.http.user_id

    def nio(self) -> FanoutClient:
        return FanoutClient(self.hs.client_url, self.user_id, self.store)


@attrs.frozen
class EncryptedPair:
    hs1: Homeserver
    hs2: Homeserver
    bot: str
    alice: User  # in A and B; sends
    carol: User  # reads A
    bob: User  # reads B; admin of B
    room_a: str
    room_b: str


def _user(hs: Homeserver, name: str, stores: Path) -> User:
    localpart = unique(name)
    password = f"pw-{localpart}"
    http = register_with_shared_secret(
        hs.client_url, hs.registration_shared_secret, localpart, password=password
    )
    return User(hs, http, password, stores / localpart)


def run(factory: Callable[[], Awaitable[T]], timeout: float = 45) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


async def _login(*users: User) -> None:
    for user in users:
        async with user.nio() as client:
            await client.login(password=user.password)


async def _read(user: User, room_id: str, event_ids: set[str]) -> list[JsonDict]:
    """Sync as ``user`` until every event of ``event_ids`` is decrypted."""
    async with user.nio() as client:
        await client.login(password=user.password)

        def decrypted(c: FanoutClient) -> bool:
            have = {e["event_id"] for e in c.events(room_id) if e["encrypted"]}
            return event_ids <= have

        await client.sync_until(decrypted, timeout=30)
        return client.events(room_id)


@pytest.fixture(scope="module")
def pair(
    federation: tuple[Homeserver, Homeserver], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EncryptedPair]:
    hs1, hs2 = federation
    stores = tmp_path_factory.mktemp("fanout-stores")
    bot = hs1.info()["bot_user_id"]
    alice, carol = _user(hs1, "alice", stores), _user(hs1, "carol", stores)
    bob = _user(hs2, "bob", stores)
    # Every device exists, with its keys uploaded, before any room key is shared.
    run(lambda: _login(alice, carol, bob))

    room_a = alice.http.create_room(
        name=unique("A"), initial_state=[ENCRYPTION_STATE], invite=[carol.user_id]
    )
    carol.http.join(room_a)
    room_b = bob.http.create_room(
        name=unique("B"), initial_state=[ENCRYPTION_STATE], invite=[alice.user_id, bot]
    )
    alice.http.join(room_b, via=[hs2.server_name])
    assert connect(alice.http, room_a, room_b, via=[hs2.server_name])["status"] == "requested"
    wait_for_membership(bob.http, room_b, bot, "join", timeout=60)
    bob.http.send_state(
        room_b, CONNECTION, room_a, {"room_id": room_a, "via": [hs1.server_name], "ferry": bot}
    )
    wait_for_notice(alice.http, room_a, bot, "now connected", timeout=60)
    connection = connections(alice.http, room_a)[room_b]
    assert (connection["status"], connection["mode"]) == ("active", "client_fanout")
    yield EncryptedPair(hs1, hs2, bot, alice, carol, bob, room_a, room_b)
    shutil.rmtree(stores, ignore_errors=True)


def _wait_raw(reader: User, room_id: str, event_id: str) -> JsonDict:
    return reader.http.wait_for_event(
        room_id, lambda e: e.get("event_id") == event_id, timeout=30, description=event_id
    )


def _entries(events: list[JsonDict], *fanout_ids: str) -> list[TimelineEntry]:
    return [e for e in merge_timeline(events) if e.fanout_id in fanout_ids]


def test_message_is_encrypted_per_room_and_merges_for_readers(
    pair: EncryptedPair, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = unique("the-eagle-lands-at-noon")
    alice = pair.alice
    code = fanout_cli(
        [
            "send",
            "--homeserver",
            pair.hs1.client_url,
            "--user",
            alice.user_id,
            "--password",
            alice.password,
            "--store",
            str(alice.store),
            "--room",
            pair.room_a,
            secret,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert set(result["sent"]) == {pair.room_a, pair.room_b}, result
    assert result["skipped"] == {}
    assert result["origin_room_id"] == pair.room_a
    fid = result["fanout_id"]

    # On the wire, in each room: m.room.encrypted, no plaintext, no tag.
    for reader, room in ((pair.carol, pair.room_a), (pair.bob, pair.room_b)):
        raw = _wait_raw(reader, room, result["sent"][room])
        assert raw["type"] == "m.room.encrypted"
        assert raw["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
        assert secret not in json.dumps(raw)
        assert fid not in json.dumps(raw)

    # Each room's member decrypts its room's copy, tag inside.
    seen_a = run(lambda: _read(pair.carol, pair.room_a, {result["sent"][pair.room_a]}))
    seen_b = run(lambda: _read(pair.bob, pair.room_b, {result["sent"][pair.room_b]}))
    for seen, room in ((seen_a, pair.room_a), (seen_b, pair.room_b)):
        (copy,) = [e for e in seen if e["event_id"] == result["sent"][room]]
        assert copy["content"]["body"] == secret
        assert copy["content"][FANOUT_KEY] == {"id": fid, "origin_room_id": pair.room_a}
        assert copy["sender"] == alice.user_id

    # The readers' views merge into one entry.
    (entry,) = _entries(seen_a + seen_b, fid)
    assert dict(entry.copies) == result["sent"]
    assert (entry.room_id, entry.content["body"], entry.divergent) == (pair.room_a, secret, False)

    # The servers never had the plaintext: not in any database file, not in the logs.
    for hs in (pair.hs1, pair.hs2):
        db_files = sorted(hs.directory.glob("homeserver.db*"))
        assert db_files, f"no database files in {hs.directory}"
        for path in db_files:
            data = path.read_bytes()
            assert secret.encode() not in data, path
            assert fid.encode() not in data, path
        log = hs.log_text()
        assert secret not in log
        assert fid not in log

    # And the module carried nothing: no pointer from its bot in either room.
    for room in (pair.room_a, pair.room_b):
        pointers = [
            e
            for e in all_events(alice.http, room)
            if e.get("sender") == pair.bot and POINTER in e.get("content", {})
        ]
        assert pointers == []


def test_reply_and_edit_reach_each_rooms_copy(
    pair: EncryptedPair, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = pair.alice

    async def send(room: str, text: str, **relation: str) -> dict[str, str]:
        # A fresh client per message, as separate CLI runs would be.
        async with alice.nio() as client:
            await client.login(password=alice.password)
            result = await client.send_text(room, text, **relation)
            assert set(result.sent) == {pair.room_a, pair.room_b}, result
            return dict(result.sent)

    original = run(lambda: send(pair.room_a, "first draft"))
    reply = run(lambda: send(pair.room_a, "a reply", reply_to=original[pair.room_a]))
    # Forget the map: the edit finds the copies by decrypting what it syncs.
    (alice.store / "fanout-map.json").unlink()
    # Edited from room B, naming B's copy.
    edit = run(lambda: send(pair.room_b, "final text", edit=original[pair.room_b]))
    assert CopyMap.load(alice.store / "fanout-map.json").find(original[pair.room_a]) is not None

    seen: list[JsonDict] = []
    for reader, room in ((pair.carol, pair.room_a), (pair.bob, pair.room_b)):
        wanted = {original[room], reply[room], edit[room]}
        events = run(lambda reader=reader, room=room, wanted=wanted: _read(reader, room, wanted))
        by_id = {e["event_id"]: e for e in events}
        assert by_id[reply[room]]["content"]["m.relates_to"] == {
            "m.in_reply_to": {"event_id": original[room]}
        }
        edit_content: dict[str, Any] = by_id[edit[room]]["content"]
        assert edit_content["m.relates_to"] == {"rel_type": "m.replace", "event_id": original[room]}
        assert edit_content["m.new_content"]["body"] == "final text"
        # The edit's tag names room B, where it was written; m.new_content
        # keeps the original's tag.
        assert edit_content[FANOUT_KEY]["origin_room_id"] == pair.room_b
        assert tag_of(edit_content["m.new_content"]) == tag_of(by_id[original[room]]["content"])
        seen.extend(events)

    original_fid = _fid_of(seen, original[pair.room_a])
    reply_fid = _fid_of(seen, reply[pair.room_a])
    first, answer = _entries(seen, original_fid, reply_fid)
    assert first.content["body"] == "final text"
    assert first.edit_event_id == edit[pair.room_a]
    assert dict(first.copies) == original
    assert answer.reply_to == first.key
    assert dict(answer.copies) == reply

    # The sender's own merged view, from the command line.
    args = ["--homeserver", pair.hs1.client_url, "--user", alice.user_id]
    args += ["--password", alice.password, "--store", str(alice.store), "--room", pair.room_b]
    assert fanout_cli(["timeline", *args]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = [e for e in lines if e["fanout_id"] in (original_fid, reply_fid)]
    assert [(e["content"]["body"], e["copies"]) for e in mine] == [
        ("final text", original),
        ("a reply", reply),
    ]


def _fid_of(events: list[JsonDict], event_id: str) -> str:
    (event,) = [e for e in events if e["event_id"] == event_id]
    tag = tag_of(event["content"])
    assert tag is not None
    return tag.id
