"""The two-sided handshake on a real homeserver: state, commands and REST."""

from __future__ import annotations

import attrs
import pytest

from harness.client import MatrixClient, MatrixError
from harness.connect_api import (
    CONNECTION,
    connect,
    connections,
    metric_value,
    notices_from,
    revoke,
    unique,
    wait_for_membership,
    wait_for_notice,
)
from harness.synapse import Homeserver, HomeserverFactory


@attrs.frozen
class Admin:
    client: MatrixClient
    room_id: str

    @property
    def user_id(self) -> str:
        assert self.client.user_id is not None
        return self.client.user_id


def make_admin(hs: Homeserver, name: str, **room: object) -> Admin:
    client = hs.register(unique(name))
    room_id = client.create_room(name=unique(f"{name}-room"), **room)
    return Admin(client, room_id)


def bot_of(hs: Homeserver) -> str:
    bot: str = hs.info()["bot_user_id"]
    return bot


def request_body(hs: Homeserver, other_room: str, **extra: object) -> dict[str, object]:
    return {"room_id": other_room, "via": [hs.server_name], "ferry": bot_of(hs), **extra}


def test_rest_handshake_goes_requested_then_active(homeserver: Homeserver) -> None:
    alice, bob = make_admin(homeserver, "alice"), make_admin(homeserver, "bob")
    bot = bot_of(homeserver)

    requested = connect(alice.client, alice.room_id, bob.room_id)
    assert requested["status"] == "requested"
    assert requested["ferry"] == bot
    assert requested["mode"] == "ferry"
    wait_for_notice(alice.client, alice.room_id, bot, "Requested a connection")
    assert connections(bob.client, bob.room_id)[alice.room_id]["status"] == "incoming"
    # B is private: the bot must not have entered it uninvited.
    assert (
        bot
        not in bob.client.request("GET", f"/_matrix/client/v3/rooms/{bob.room_id}/joined_members")[
            "joined"
        ]
    )

    approved = connect(bob.client, bob.room_id, alice.room_id)
    assert approved["status"] == "active"
    wait_for_notice(alice.client, alice.room_id, bot, "now connected")
    wait_for_notice(bob.client, bob.room_id, bot, "now connected")
    for admin, other in ((alice, bob), (bob, alice)):
        view = connections(admin.client, admin.room_id)[other.room_id]
        assert view == {
            "room_id": other.room_id,
            "status": "active",
            "ferry": bot,
            "via": [homeserver.server_name],
            "mode": "ferry",
        }


def test_state_event_handshake_and_revocation(homeserver: Homeserver) -> None:
    alice, bob = make_admin(homeserver, "alice"), make_admin(homeserver, "bob")
    bot = bot_of(homeserver)
    alice.client.send_state(
        alice.room_id, CONNECTION, bob.room_id, request_body(homeserver, bob.room_id)
    )
    bob.client.send_state(
        bob.room_id, CONNECTION, alice.room_id, request_body(homeserver, alice.room_id)
    )
    wait_for_notice(bob.client, bob.room_id, bot, "now connected")
    assert connections(alice.client, alice.room_id)[bob.room_id]["status"] == "active"

    alice.client.send_state(alice.room_id, CONNECTION, bob.room_id, {})
    wait_for_notice(bob.client, bob.room_id, bot, "has ended")
    wait_for_notice(alice.client, alice.room_id, bot, "has ended")
    assert connections(alice.client, alice.room_id)[bob.room_id]["status"] == "revoked"
    assert connections(bob.client, bob.room_id)[alice.room_id]["status"] == "revoked"
    # No connection needs the bot any more: it leaves both rooms.
    wait_for_membership(alice.client, alice.room_id, bot, "leave")
    wait_for_membership(bob.client, bob.room_id, bot, "leave")


def test_rest_revoke_by_either_side(homeserver: Homeserver) -> None:
    alice, bob = make_admin(homeserver, "alice"), make_admin(homeserver, "bob")
    bot = bot_of(homeserver)
    connect(alice.client, alice.room_id, bob.room_id)
    assert connect(bob.client, bob.room_id, alice.room_id)["status"] == "active"
    assert revoke(bob.client, bob.room_id, alice.room_id)["status"] == "revoked"
    assert bob.client.get_state(bob.room_id, CONNECTION, alice.room_id) == {}
    wait_for_notice(alice.client, alice.room_id, bot, "has ended")
    with pytest.raises(MatrixError) as info:
        revoke(bob.client, bob.room_id, alice.room_id)
    assert (info.value.status, info.value.errcode) == (404, "M_NOT_FOUND")


def test_chat_commands(homeserver: Homeserver) -> None:
    alice = make_admin(homeserver, "alice")
    bob = make_admin(homeserver, "bob", room_alias_name=unique("bobroom"))
    bob_alias = bob.client.get_state(bob.room_id, "m.room.canonical_alias")["alias"]
    bot = bot_of(homeserver)
    alice.client.invite(alice.room_id, bot)
    wait_for_membership(alice.client, alice.room_id, bot, "join")

    alice.client.send_message(alice.room_id, "!connect help")
    help_notice = wait_for_notice(alice.client, alice.room_id, bot, "!connect request")["content"]
    # Commands show as code in HTML, and without backticks in the plain body.
    assert "`" not in help_notice["body"]
    assert help_notice["format"] == "org.matrix.custom.html"
    assert "<code>!connect list</code>" in help_notice["formatted_body"]
    alice.client.send_message(alice.room_id, f"!connect request {bob_alias}")
    wait_for_notice(alice.client, alice.room_id, bot, f"Requested a connection to {bob_alias}")

    # Approving needs the bot present (or invited) in B, and a request to approve.
    bob.client.invite(bob.room_id, bot)
    bob.client.send_message(bob.room_id, "!connect approve !nonexistent:example.org")
    wait_for_notice(bob.client, bob.room_id, bot, "has not asked to connect")
    bob.client.send_message(bob.room_id, f"!connect approve {alice.room_id}")
    # A has a name and no alias: replies name it by its name, with its ID.
    connected = wait_for_notice(bob.client, bob.room_id, bot, "Connected to ")
    assert connected["content"]["body"].endswith(f'" ({alice.room_id}).')
    wait_for_notice(alice.client, alice.room_id, bot, f"now connected to {bob_alias}")

    alice.client.send_message(alice.room_id, "!connect list")
    listing = wait_for_notice(alice.client, alice.room_id, bot, "Connections of this room")
    assert f"{bob_alias}: active (ferry)" in listing["content"]["body"]
    assert listing["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]

    # A member without the power level is told exactly why not.
    carol = homeserver.register(unique("carol"))
    alice.client.invite(alice.room_id, carol.user_id or "")
    carol.join(alice.room_id)
    carol.send_message(alice.room_id, f"!connect revoke {bob_alias}")
    wait_for_notice(
        alice.client,
        alice.room_id,
        bot,
        "Could not revoke: Changing this room's connections needs power level 100",
    )
    assert connections(alice.client, alice.room_id)[bob.room_id]["status"] == "active"

    alice.client.send_message(alice.room_id, "!connect frobnicate")
    wait_for_notice(alice.client, alice.room_id, bot, "Unknown command 'frobnicate'")


def test_non_admin_cannot_request_approve_or_revoke(homeserver: Homeserver) -> None:
    alice, bob = make_admin(homeserver, "alice"), make_admin(homeserver, "bob")
    mod = homeserver.register(unique("mod"))
    alice.client.invite(alice.room_id, mod.user_id or "")
    mod.join(alice.room_id)
    # Power 50 lets the room's own auth rules accept state events from mod,
    # so the refusal below is the module's.
    alice.client.set_power_level(alice.room_id, mod.user_id or "", 50)

    with pytest.raises(MatrixError) as info:
        mod.send_state(
            alice.room_id, CONNECTION, bob.room_id, request_body(homeserver, bob.room_id)
        )
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")
    assert "power level 100" in (info.value.error or "")

    with pytest.raises(MatrixError) as info:
        connect(mod, alice.room_id, bob.room_id)
    assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")

    connect(bob.client, bob.room_id, alice.room_id)  # B asks; mod may not approve
    with pytest.raises(MatrixError) as info:
        connect(mod, alice.room_id, bob.room_id)
    assert info.value.errcode == "M_FORBIDDEN"

    connect(alice.client, alice.room_id, bob.room_id)
    with pytest.raises(MatrixError) as info:
        revoke(mod, alice.room_id, bob.room_id)
    assert info.value.errcode == "M_FORBIDDEN"
    with pytest.raises(MatrixError) as info:
        mod.send_state(alice.room_id, CONNECTION, bob.room_id, {})
    assert info.value.errcode == "M_FORBIDDEN"
    assert connections(alice.client, alice.room_id)[bob.room_id]["status"] == "active"

    outsider = homeserver.register(unique("outsider"))
    with pytest.raises(MatrixError) as info:
        connections(outsider, alice.room_id)
    assert info.value.errcode == "M_FORBIDDEN"


@pytest.mark.parametrize(
    ("content", "errcode", "message"),
    [
        ({"room_id": "!other:example.org", "via": ["example.org"]}, "M_BAD_JSON", "ferry"),
        ("mismatch", "M_BAD_JSON", "room_id must equal the state_key"),
        ("self", "M_BAD_JSON", "itself"),
        ("via-string", "M_BAD_JSON", "via"),
        ("oversized", "M_BAD_JSON", "larger than"),
        ("stranger-ferry", "M_FORBIDDEN", "ferry"),
    ],
)
def test_malformed_connection_events_are_refused(
    homeserver: Homeserver, content: object, errcode: str, message: str
) -> None:
    alice, bob = make_admin(homeserver, "alice"), make_admin(homeserver, "bob")
    base = request_body(homeserver, bob.room_id)
    state_key = bob.room_id
    if content == "mismatch":
        content = {**base, "room_id": "!elsewhere:example.org"}
    elif content == "self":
        content, state_key = {**base, "room_id": alice.room_id}, alice.room_id
    elif content == "via-string":
        content = {**base, "via": homeserver.server_name}
    elif content == "oversized":
        content = {**base, "note": "x" * 5000}
    elif content == "stranger-ferry":
        content = {**base, "ferry": "@someone:example.org"}
    else:
        assert isinstance(content, dict)
        state_key = content["room_id"]
    with pytest.raises(MatrixError) as info:
        alice.client.send_state(alice.room_id, CONNECTION, state_key, content)  # type: ignore[arg-type]
    assert info.value.errcode == errcode
    assert info.value.status == (400 if errcode == "M_BAD_JSON" else 403)
    assert message in (info.value.error or "")
    assert connections(alice.client, alice.room_id) == {}


def test_mismatched_rooms_need_acknowledgement_on_both_sides(homeserver: Homeserver) -> None:
    alice = make_admin(
        homeserver,
        "alice",
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    bob = make_admin(homeserver, "bob")
    with pytest.raises(MatrixError) as info:
        connect(alice.client, alice.room_id, bob.room_id)
    assert info.value.errcode == "M_FORBIDDEN"
    assert "encrypted" in (info.value.error or "")
    assert "encryption_mismatch" in (info.value.error or "")

    ack = ["encryption_mismatch"]
    assert (
        connect(alice.client, alice.room_id, bob.room_id, acknowledge=ack)["status"] == "requested"
    )
    with pytest.raises(MatrixError):
        connect(bob.client, bob.room_id, alice.room_id)
    view = connect(bob.client, bob.room_id, alice.room_id, acknowledge=ack)
    assert view["status"] == "active"
    assert view["mode"] == "client_fanout"


def test_three_rooms_connect_pairwise(homeserver: Homeserver) -> None:
    admins = [make_admin(homeserver, n) for n in ("alice", "bob", "carol")]
    bot = bot_of(homeserver)
    for i, a in enumerate(admins):
        for b in admins[i + 1 :]:
            connect(a.client, a.room_id, b.room_id)
            assert connect(b.client, b.room_id, a.room_id)["status"] == "active"
    for a in admins:
        views = connections(a.client, a.room_id)
        assert sorted(views) == sorted(b.room_id for b in admins if b is not a)
        assert {v["status"] for v in views.values()} == {"active"}
    # Reconciliation takes queued rooms in no fixed order, so a notice in one
    # room says nothing about the others: wait for each.
    for a in admins:
        wait_for_notice(a.client, a.room_id, bot, "now connected")
    joined = admins[0].client.request(
        "GET", f"/_matrix/client/v3/rooms/{admins[0].room_id}/joined_members"
    )["joined"]
    assert bot in joined


def test_limit_on_connections_per_room(make_homeserver: HomeserverFactory) -> None:
    hs = make_homeserver(module_config={"limits": {"connections_per_room": 1}})
    alice, bob, carol = (make_admin(hs, n) for n in ("alice", "bob", "carol"))
    connect(alice.client, alice.room_id, bob.room_id)
    with pytest.raises(MatrixError) as info:
        connect(alice.client, alice.room_id, carol.room_id)
    assert info.value.errcode == "M_FORBIDDEN"
    assert "limit is 1" in (info.value.error or "")


def test_restart_keeps_every_status(make_homeserver: HomeserverFactory) -> None:
    hs = make_homeserver()
    alice, bob, carol = (make_admin(hs, n) for n in ("alice", "bob", "carol"))
    bot = bot_of(hs)
    connect(alice.client, alice.room_id, bob.room_id)
    connect(bob.client, bob.room_id, alice.room_id)
    connect(alice.client, alice.room_id, carol.room_id)
    wait_for_notice(bob.client, bob.room_id, bot, "now connected")
    # The acting process records carol's incoming request after it announces it.
    carol_name = carol.client.get_state(carol.room_id, "m.room.name")["name"]
    wait_for_notice(
        alice.client,
        alice.room_id,
        bot,
        f'connection from this room to "{carol_name}" ({carol.room_id})',
    )
    before = {a.room_id: connections(a.client, a.room_id) for a in (alice, bob, carol)}
    notices_before = notices_from(bob.client, bob.room_id, bot)

    hs.restart()

    after = {a.room_id: connections(a.client, a.room_id) for a in (alice, bob, carol)}
    assert after == before
    assert before[alice.room_id][bob.room_id]["status"] == "active"
    assert before[alice.room_id][carol.room_id]["status"] == "requested"
    assert before[carol.room_id][alice.room_id]["status"] == "incoming"
    # Start-up reconciliation found nothing new, so it announced nothing new.
    marker = bob.client.send_message(bob.room_id, "after restart")
    bob.client.wait_for_event(bob.room_id, lambda e: e.get("event_id") == marker)
    assert notices_from(bob.client, bob.room_id, bot) == notices_before


def test_metrics_count_refusals_transitions_and_commands(homeserver: Homeserver) -> None:
    alice, bob = make_admin(homeserver, "alice"), make_admin(homeserver, "bob")
    bot = bot_of(homeserver)
    refused = "synapse_room_connect_refused_connection_events_total"
    before = metric_value(homeserver, refused, errcode="M_BAD_JSON")
    with pytest.raises(MatrixError):
        alice.client.send_state(alice.room_id, CONNECTION, bob.room_id, {"room_id": 1})
    assert metric_value(homeserver, refused, errcode="M_BAD_JSON") == before + 1

    transitions = "synapse_room_connect_transitions_total"
    active_before = metric_value(homeserver, transitions, status="active")
    connect(alice.client, alice.room_id, bob.room_id)
    connect(bob.client, bob.room_id, alice.room_id)
    wait_for_notice(bob.client, bob.room_id, bot, "now connected")
    wait_for_notice(alice.client, alice.room_id, bot, "now connected")
    # One transition per direction of the pair.
    assert metric_value(homeserver, transitions, status="active") == active_before + 2

    commands = "synapse_room_connect_commands_total"
    help_before = metric_value(homeserver, commands, verb="help", outcome="ok")
    alice.client.send_message(alice.room_id, "!connect help")
    help_notice = wait_for_notice(alice.client, alice.room_id, bot, "!connect request")["content"]
    # Commands show as code in HTML, and without backticks in the plain body.
    assert "`" not in help_notice["body"]
    assert help_notice["format"] == "org.matrix.custom.html"
    assert "<code>!connect list</code>" in help_notice["formatted_body"]
    assert metric_value(homeserver, commands, verb="help", outcome="ok") == help_before + 1
