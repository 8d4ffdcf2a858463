"""Which mentions a counterpart carries: the original's, kept to the target room."""

from synapse_room_connect.ferry.mentions import (
    MAX_USER_MENTIONS,
    Intended,
    intended,
    kept,
    room_notification_level,
)


def test_an_original_without_mentions_intends_nobody() -> None:
    assert intended({"body": "hi Alice"}) == Intended()
    assert not intended({"m.mentions": {}}).anything
    # Pills in the HTML are not read back into mentions.
    pill = '<a href="https://matrix.to/#/@alice:hs">Alice</a>'
    assert intended({"formatted_body": pill, "body": "Alice"}) == Intended()


def test_malformed_mentions_are_ignored_not_fatal() -> None:
    for bad in ("x", [], {"user_ids": "@a:hs"}, {"user_ids": [1, None, "alice", "@"], "room": 1}):
        assert intended({"m.mentions": bad}) == Intended()


def test_user_mentions_keep_their_order_once_each() -> None:
    content = {"m.mentions": {"user_ids": ["@b:hs", "@a:hs", "@b:hs"], "room": True}}
    assert intended(content) == Intended(("@b:hs", "@a:hs"), room=True)
    frozen = {"m.mentions": {"user_ids": ("@b:hs",)}}
    assert intended(frozen).user_ids == ("@b:hs",)
    many = {"m.mentions": {"user_ids": [f"@u{n}:hs" for n in range(200)]}}
    assert len(intended(many).user_ids) == MAX_USER_MENTIONS


def test_a_ghost_stands_for_its_person() -> None:
    owners = {"@ghost_bob:a": "@bob:b"}
    content = {"m.mentions": {"user_ids": ["@ghost_bob:a", "@bob:b", "@carol:a"]}}
    assert intended(content, owners.get).user_ids == ("@bob:b", "@carol:a")


def test_only_members_of_the_target_room_are_kept() -> None:
    wanted = Intended(("@alice:hs", "@stranger:hs"), room=False)
    assert kept(wanted, {"@alice:hs", "@bob:hs"}, may_mention_room=True) == {
        "user_ids": ["@alice:hs"]
    }
    assert kept(wanted, set(), may_mention_room=True) == {}


def test_room_mention_needs_the_power_there() -> None:
    wanted = Intended((), room=True)
    assert kept(wanted, set(), may_mention_room=True) == {"room": True}
    assert kept(wanted, set(), may_mention_room=False) == {}
    # Asked for by nobody, allowed or not, there is none.
    assert kept(Intended(), set(), may_mention_room=True) == {}


def test_room_notification_level() -> None:
    assert room_notification_level(None) == 50
    assert room_notification_level({}) == 50
    assert room_notification_level({"notifications": {"room": 20}}) == 20
    assert room_notification_level({"notifications": {"room": "75"}}) == 75
    for bad in (
        {"notifications": "x"},
        {"notifications": {"room": "high"}},
        {"notifications": {"room": True}},
    ):
        assert room_notification_level(bad) == 50
