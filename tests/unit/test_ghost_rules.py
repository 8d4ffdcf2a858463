"""The pure rules of ghosts: IDs, the namespace and its SQL pattern, names,
and the options and consent key that choose who sends."""

from __future__ import annotations

import sqlite3

import jsonschema
import pytest

from synapse_room_connect.config import FallbackMode, parse_config
from synapse_room_connect.core.ghosts import (
    MAX_DISPLAYNAME,
    GhostNamespace,
    Senders,
    ghost_displayname,
    room_part,
)
from synapse_room_connect.core.handshake import ContentError, validate_content
from synapse_room_connect.ferry.pointers import PROFILE_KEY, Original, render

NS = GhostNamespace("_room_connect_", "example.org")


def test_one_ghost_per_person_and_room() -> None:
    ghost = NS.user_id_for("@bob:b.example", "!annex:b.example")
    assert ghost == NS.user_id_for("@bob:b.example", "!annex:b.example")
    assert ghost.startswith("@_room_connect_")
    assert ghost.endswith(":example.org")
    localpart = ghost[1:].partition(":")[0]
    assert localpart == localpart.lower()
    assert len(localpart) == len("_room_connect_") + 16
    others = {
        NS.user_id_for("@bob:b.example", "!lobby:b.example"),
        NS.user_id_for("@carol:b.example", "!annex:b.example"),
    }
    assert ghost not in others
    assert len(others) == 2


def test_namespace_is_this_servers_prefix() -> None:
    assert NS.contains(NS.user_id_for("@bob:b.example", "!r:b.example"))
    assert not NS.contains("@_room_connect_abc:elsewhere.example")
    assert not NS.contains("@room-connect:example.org")
    assert NS.localpart_reserved("_room_connect_anything")
    assert not NS.localpart_reserved("alice")


def test_remote_ghosts_are_on_the_ferrys_server() -> None:
    assert NS.is_ghost_of_ferry("@_room_connect_abc:far.example", "@room-connect:far.example")
    assert not NS.is_ghost_of_ferry("@_room_connect_abc:evil.example", "@room-connect:far.example")
    assert not NS.is_ghost_of_ferry("@mallory:far.example", "@room-connect:far.example")


def test_like_pattern_matches_only_ghosts() -> None:
    """The ferry's timeline read leaves out what this matches: an unescaped
    ``_`` would also leave out people whose IDs merely look alike."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE events (sender TEXT)")
    ghost = NS.user_id_for("@bob:b.example", "!r:b.example")
    senders = [ghost, "@xroomxconnectxabc:example.org", "@_room_connect_abc:other.example", "@a:b"]
    db.executemany("INSERT INTO events VALUES (?)", [(s,) for s in senders])
    matched = [
        row[0]
        for row in db.execute(
            "SELECT sender FROM events WHERE sender LIKE ? ESCAPE '!'", (NS.like_pattern(),)
        )
    ]
    assert matched == [ghost]
    odd = GhostNamespace("a%b!_", "host_1.example")
    db.execute("INSERT INTO events VALUES (?)", ("@a%b!_zz:host_1.example",))
    db.execute("INSERT INTO events VALUES (?)", ("@aXb!Xzz:hostX1.example",))
    found = db.execute(
        "SELECT sender FROM events WHERE sender LIKE ? ESCAPE '!'", (odd.like_pattern(),)
    ).fetchall()
    assert found == [("@a%b!_zz:host_1.example",)]


def test_names_read_like_the_person_and_their_room() -> None:
    assert ghost_displayname("Bob", "@bob:b.example", "Annex") == "Bob (Annex)"
    assert ghost_displayname(None, "@bob:b.example", "Annex") == "bob (Annex)"
    assert ghost_displayname("  ", "@bob:b.example", "Annex") == "bob (Annex)"
    long = ghost_displayname("B" * 500, "@bob:b.example", "Annex")
    assert len(long) == MAX_DISPLAYNAME
    assert long.endswith("… (Annex)")
    assert room_part("Annex", "#annex:b.example", "!r:b") == "Annex"
    assert room_part(None, "#annex:b.example", "!r:b") == "#annex"
    assert room_part(None, None, "!r:b") == "!r:b"


def test_senders_option_and_prefix_are_checked() -> None:
    assert parse_config({}).senders is Senders.GHOSTS
    assert parse_config({"senders": "bot"}).senders is Senders.BOT
    assert parse_config({"ghost_localpart_prefix": "ghost."}).ghost_localpart_prefix == "ghost."
    with pytest.raises(jsonschema.ValidationError) as bad:
        parse_config({"senders": "everyone"})
    assert list(bad.value.path) == ["senders"]
    with pytest.raises(jsonschema.ValidationError) as upper:
        parse_config({"ghost_localpart_prefix": "Ghost"})
    assert list(upper.value.path) == ["ghost_localpart_prefix"]
    with pytest.raises(jsonschema.ValidationError) as clash:
        parse_config({"bot_localpart": "_room_connect_bot"})
    assert list(clash.value.path) == ["ghost_localpart_prefix"]


def test_consent_may_name_its_senders() -> None:
    content = {"room_id": "!b:x", "via": ["x"], "ferry": "@bot:x"}
    validate_content({**content, "senders": "bot"}, room_id="!a:x", state_key="!b:x")
    validate_content({**content, "senders": "ghosts"}, room_id="!a:x", state_key="!b:x")
    with pytest.raises(ContentError, match="senders"):
        validate_content({**content, "senders": "all"}, room_id="!a:x", state_key="!b:x")


def test_a_ghost_pointer_carries_no_name_and_no_profile() -> None:
    original = Original(
        room_id="!a:x",
        event_id="$e",
        sender="@alice:x",
        origin_server_ts=1,
        type="m.room.message",
        content={"msgtype": "m.text", "body": "hi <b>"},
        displayname="Alice",
    )
    by_ghost = render(original, FallbackMode.COPY, by_ghost=True)
    assert (by_ghost["body"], by_ghost["formatted_body"]) == ("hi <b>", "hi &lt;b&gt;")
    assert PROFILE_KEY not in by_ghost
    by_bot = render(original, FallbackMode.COPY)
    assert by_bot["body"] == "Alice: hi <b>"
    assert PROFILE_KEY in by_bot
    assert by_ghost["org.matrix.msc2923.pointer"] == by_bot["org.matrix.msc2923.pointer"]
