"""Bridge portal rooms: created by an application service's bot in room
version 12, where only the bot (the creator) has power. Connected by the
homeserver admin's API and by the bridge itself with its as_token."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from urllib.parse import quote

import attrs
import pytest

from harness import Homeserver, MatrixClient, MatrixError, WorkerDeployment
from harness.appservice import AppService, appservice_client, register_appservice
from harness.client import CLIENT_V3, JsonDict
from harness.connect_api import (
    ROOT,
    connect,
    connections,
    metric_value,
    notices_from,
    revoke,
    unique,
    wait_for_membership,
    wait_for_notice,
)
from harness.ferry_helpers import connected_pair, wait_for_pointer

ADMIN = f"{ROOT}/admin"


def _q(room_id: str) -> str:
    return quote(room_id, safe="")


@attrs.frozen
class Bridge:
    hs: Homeserver
    service: AppService
    bot: str
    ferry: str
    admin: MatrixClient

    def client(self, user_id: str | None = None) -> MatrixClient:
        return appservice_client(self.hs, self.service, user_id)


@pytest.fixture(scope="module")
def bridge(harness_dir: Path) -> Iterator[Bridge]:
    hs = Homeserver(harness_dir, name="hs-bridge")
    service = AppService()
    register_appservice(hs, service)
    try:
        hs.start()
        admin = hs.register(unique("admin"), admin=True)
        ferry: str = hs.info()["bot_user_id"]
        yield Bridge(hs, service, hs.user_id(service.sender_localpart), ferry, admin)
    finally:
        hs.destroy()


@attrs.frozen
class Portal:
    room_id: str
    user: MatrixClient


def portal_room(bridge: Bridge) -> Portal:
    """A room the bridge's bot creates in room version 12, with a Matrix user in it."""
    bot = bridge.client()
    room_id = bot.create_room(name=unique("irc-channel"), room_version="12")
    user = bridge.hs.register(unique("user"), displayname="User")
    bot.invite(room_id, str(user.user_id))
    user.join(room_id)
    return Portal(room_id, user)


def native_room(bridge: Bridge) -> tuple[MatrixClient, str]:
    owner = bridge.hs.register(unique("owner"), displayname="Owner")
    return owner, owner.create_room(name=unique("native"))


def admin_connect(client: MatrixClient, room_id: str, other: str) -> JsonDict:
    return client.request("POST", f"{ADMIN}/rooms/{_q(room_id)}/connections", {"room": other})


def admin_revoke(client: MatrixClient, room_id: str, other: str) -> JsonDict:
    return client.request("DELETE", f"{ADMIN}/rooms/{_q(room_id)}/connections/{_q(other)}")


def admin_list_all(client: MatrixClient, limit: int) -> list[JsonDict]:
    """Every page of ``GET admin/connections``, followed through next_batch."""
    entries: list[JsonDict] = []
    token: str | None = None
    while True:
        page = client.request("GET", f"{ADMIN}/connections", query={"limit": limit, "from": token})
        assert len(page["connections"]) <= limit
        entries.extend(page["connections"])
        token = page.get("next_batch")
        if token is None:
            return entries


def admin_entry(client: MatrixClient, room_a: str, room_b: str) -> JsonDict:
    entries = admin_list_all(client, limit=1)
    keys = [tuple(r["room_id"] for r in e["rooms"]) for e in entries]
    assert len(keys) == len(set(keys)), "a connection listed twice across pages"
    (entry,) = [e for e in entries if {r["room_id"] for r in e["rooms"]} == {room_a, room_b}]
    return entry


def wait_for_pointer_count(client: MatrixClient, room_a: str, room_b: str, count: int) -> JsonDict:
    # The ferry records a pointer just after sending it; the count is a
    # database row with nothing to sync on, so poll it for a bounded time.
    deadline = time.monotonic() + 30
    while True:
        entry = admin_entry(client, room_a, room_b)
        if entry["pointers"] >= count or time.monotonic() > deadline:
            return entry
        time.sleep(0.2)


def forbidden(call: Callable[[], object]) -> MatrixError:
    with pytest.raises(MatrixError) as raised:
        call()
    assert raised.value.status == 403, raised.value
    assert raised.value.errcode == "M_FORBIDDEN", raised.value
    return raised.value


def test_portal_user_cannot_connect_but_creator_holds_power(bridge: Bridge) -> None:
    portal = portal_room(bridge)
    _, native = native_room(bridge)
    levels = portal.user.get_state(portal.room_id, "m.room.power_levels")
    # Room version 12: the creator's power is implied, never listed.
    assert bridge.bot not in levels.get("users", {})
    error = forbidden(lambda: connect(portal.user, portal.room_id, native))
    assert "needs power level 100" in str(error.error)


def test_homeserver_admin_connects_portal_and_messages_cross(bridge: Bridge) -> None:
    portal = portal_room(bridge)
    owner, native = native_room(bridge)
    admin = bridge.admin
    before = metric_value(
        bridge.hs, "synapse_room_connect_admin_actions_total", action="connect", outcome="done"
    )

    requested = admin_connect(admin, portal.room_id, native)
    assert requested["status"] == "requested"
    assert requested["room_id"] == native
    notice = wait_for_notice(portal.user, portal.room_id, bridge.ferry, str(admin.user_id))
    assert bridge.bot in notice["content"]["body"]
    assert connect(owner, native, portal.room_id)["status"] == "active"
    wait_for_notice(portal.user, portal.room_id, bridge.ferry, "now connected")
    wait_for_notice(owner, native, bridge.ferry, "now connected")

    from_portal = portal.user.send_message(portal.room_id, "hello from the channel")
    wait_for_pointer(owner, native, from_portal)
    from_native = owner.send_message(native, "hello from the native room")
    wait_for_pointer(portal.user, portal.room_id, from_native)

    after = metric_value(
        bridge.hs, "synapse_room_connect_admin_actions_total", action="connect", outcome="done"
    )
    assert after == before + 1
    assert f"Homeserver admin {admin.user_id} asked to connect {portal.room_id}" in (
        bridge.hs.log_text()
    )

    entry = wait_for_pointer_count(admin, portal.room_id, native, 2)
    assert entry["status"] == "active"
    assert entry["ferry"] == bridge.ferry
    assert entry["mode"] == "ferry"
    assert entry["pointers"] == 2
    assert entry["last_pointer_ts"] is not None
    rooms = {r["room_id"]: r for r in entry["rooms"]}
    assert rooms[portal.room_id]["consent"]["sender"] == bridge.bot
    assert rooms[native]["consent"]["sender"] == owner.user_id
    assert all(r["consent"]["ts"] > 0 for r in rooms.values())
    assert rooms[native]["name"] is not None
    assert rooms[portal.room_id]["pointers_received"] == 1

    revoked = admin_revoke(admin, portal.room_id, native)
    assert revoked["status"] == "revoked"
    wait_for_notice(portal.user, portal.room_id, bridge.ferry, f"{admin.user_id}, an admin")
    wait_for_notice(owner, native, bridge.ferry, "has ended")
    assert admin_entry(admin, portal.room_id, native)["status"] == "revoked"


def test_admin_api_refuses_everyone_but_server_admins(bridge: Bridge) -> None:
    portal = portal_room(bridge)
    _, native = native_room(bridge)
    for client in (portal.user, bridge.client()):
        forbidden(partial(client.request, "GET", f"{ADMIN}/connections"))
        forbidden(partial(admin_connect, client, portal.room_id, native))
        forbidden(partial(admin_revoke, client, portal.room_id, native))
    assert connections(portal.user, portal.room_id) == {}


def test_admin_refused_when_no_local_member_has_power(bridge: Bridge) -> None:
    creator = bridge.hs.register(unique("creator"))
    member = bridge.hs.register(unique("member"))
    room_id = creator.create_room(name=unique("orphan"), preset="public_chat")
    member.join(room_id)
    creator.leave(room_id)
    _, native = native_room(bridge)
    error = forbidden(lambda: admin_connect(bridge.admin, room_id, native))
    assert f"the most powerful is {member.user_id} with 0" in str(error.error)

    with pytest.raises(MatrixError) as raised:
        admin_connect(bridge.admin, f"!unknown:{bridge.hs.server_name}", native)
    assert raised.value.status == 400
    with pytest.raises(MatrixError) as raised:
        admin_connect(bridge.admin, portal_room(bridge).room_id, "not a room")
    assert raised.value.status == 400


def test_bridge_connects_its_portal_with_its_as_token(bridge: Bridge) -> None:
    portal = portal_room(bridge)
    owner, native = native_room(bridge)
    as_bot = bridge.client(bridge.bot)  # masquerading as its own bot, ?user_id=

    assert connect(as_bot, portal.room_id, native)["status"] == "requested"
    assert connect(owner, native, portal.room_id)["status"] == "active"
    wait_for_notice(portal.user, portal.room_id, bridge.ferry, "now connected")
    from_native = owner.send_message(native, "to the channel")
    wait_for_pointer(portal.user, portal.room_id, from_native)
    from_portal = portal.user.send_message(portal.room_id, "to the native room")
    wait_for_pointer(owner, native, from_portal)

    plain = bridge.client()  # the as_token alone acts as the bot
    assert connections(plain, portal.room_id)[native]["status"] == "active"
    assert revoke(plain, portal.room_id, native)["status"] == "revoked"
    wait_for_notice(owner, native, bridge.ferry, "has ended")


def test_bridge_user_without_power_is_refused(bridge: Bridge) -> None:
    portal = portal_room(bridge)
    _, native = native_room(bridge)
    localpart = unique("irc_guest")
    bridge.client().request(
        "POST",
        "/_matrix/client/v3/register",
        {"type": "m.login.application_service", "username": localpart},
    )
    puppet = bridge.client(bridge.hs.user_id(localpart))
    bridge.client().invite(portal.room_id, str(puppet.user_id))
    puppet.join(portal.room_id)
    error = forbidden(lambda: connect(puppet, portal.room_id, native))
    assert f"{puppet.user_id} has 0" in str(error.error)


def test_admin_listing_on_postgres(homeserver_pg: Homeserver) -> None:
    pair = connected_pair(homeserver_pg)
    admin = homeserver_pg.register(unique("admin"), admin=True)
    original = pair.alice.send_message(pair.room_a, "counted")
    wait_for_pointer(pair.bob, pair.room_b, original)
    entry = wait_for_pointer_count(admin, pair.room_a, pair.room_b, 1)
    assert entry["status"] == "active"
    assert entry["pointers"] == 1
    rooms = {r["room_id"]: r for r in entry["rooms"]}
    assert rooms[pair.room_a]["consent"]["sender"] == pair.alice.user_id
    assert rooms[pair.room_b]["consent"]["sender"] == pair.bob.user_id
    assert rooms[pair.room_b]["pointers_received"] == 1


def test_admin_connects_from_a_client_worker(workers: WorkerDeployment) -> None:
    """The admin's request is served by the client worker, which sends the
    consent, joins the bot and posts the notice there."""
    ferry: str = workers.info()["bot_user_id"]
    admin = workers.register(unique("admin"), admin=True)
    alice = workers.register(unique("alice"))
    bob = workers.register(unique("bob"))
    room_a = alice.create_room(name=unique("A"))
    room_b = bob.create_room(name=unique("B"))
    assert admin_connect(admin, room_a, room_b)["status"] == "requested"
    wait_for_notice(alice, room_a, ferry, str(admin.user_id), timeout=60)
    assert connect(bob, room_b, room_a)["status"] == "active"
    wait_for_notice(alice, room_a, ferry, "now connected", timeout=60)
    original = alice.send_message(room_a, "through the workers")
    wait_for_pointer(bob, room_b, original)


def test_a_refusal_names_who_can_act_and_for_a_portal_both_routes(bridge: Bridge) -> None:
    portal = portal_room(bridge)
    owner, native = native_room(bridge)
    # The bridge names its bot in this room, as bridges do.
    member = {"membership": "join", "displayname": "IRC Bridge"}
    bridge.client().send_state(portal.room_id, "m.room.member", bridge.bot, member)

    text = str(forbidden(lambda: connect(portal.user, portal.room_id, native)).error)
    assert f"needs power level 100; {portal.user.user_id} has 0. " in text
    assert f"Members who have it: IRC Bridge ({bridge.bot}). " in text
    assert text.endswith(
        f"Room {portal.room_id} is run by the bridge (application service) "
        f"{bridge.service.id}, through its user {bridge.bot}, so its connections can be "
        f"changed by the bridge's operator with the bridge's as_token on "
        f"{ROOT}/rooms/{portal.room_id}/connections, or by an admin of "
        f"{bridge.hs.server_name} with {ROOT}/admin/rooms/{portal.room_id}/connections "
        "(docs/msc2923.md, section 11)."
    )

    # The chat reply is the same refusal.
    portal.user.invite(portal.room_id, bridge.ferry)
    wait_for_membership(portal.user, portal.room_id, bridge.ferry, "join")
    portal.user.send_message(portal.room_id, f"!connect request {native}")
    reply = wait_for_notice(portal.user, portal.room_id, bridge.ferry, "Could not request")
    assert reply["content"]["body"] == f"Could not request: {text}"

    # A room of people: its admins are named, and no bridge is mentioned.
    guest = bridge.hs.register(unique("guest"), displayname="Guest")
    owner.invite(native, str(guest.user_id))
    guest.join(native)
    text = str(forbidden(lambda: connect(guest, native, portal.room_id)).error)
    assert text.endswith(f"{guest.user_id} has 0. Members who have it: Owner ({owner.user_id}).")


def reconciled(bridge: Bridge) -> None:
    """Returns once reconciliation has finished what it was doing: it works
    through one queue, and a new request's notice comes from that queue."""
    user = bridge.hs.register(unique("barrier"))
    room_a = user.create_room(preset="public_chat")
    room_b = user.create_room(preset="public_chat")
    connect(user, room_a, room_b)
    wait_for_notice(user, room_a, bridge.ferry, "Requested a connection")


def test_an_invite_only_room_that_lets_the_bot_in_later_hears_of_the_request_once(
    bridge: Bridge,
) -> None:
    """The portal's notice asks the other room's admin to invite the bot;
    doing so brings the request, with its approve command, into that room,
    once, also across a restart."""
    portal = portal_room(bridge)
    owner, native = native_room(bridge)
    admin_connect(bridge.admin, portal.room_id, native)
    wait_for_notice(portal.user, portal.room_id, bridge.ferry, "it is invite-only")
    # The invite comes after the bot was refused, not during its attempt.
    reconciled(bridge)
    assert notices_from(owner, native, bridge.ferry) == []

    owner.invite(native, bridge.ferry)
    asks = wait_for_notice(owner, native, bridge.ferry, "asks to connect")["content"]["body"]
    approve = f"!connect approve {portal.room_id}"
    assert asks.endswith(f"can approve with {approve}.")

    done = "Start-up reconciliation done"
    before = bridge.hs.log_text().count(done)
    bridge.hs.restart()
    deadline = time.monotonic() + 60
    while bridge.hs.log_text().count(done) == before:
        assert time.monotonic() < deadline, "start-up reconciliation did not finish"
        time.sleep(0.2)
    assert [n for n in notices_from(owner, native, bridge.ferry) if "asks to" in n] == [asks]

    # The command it names connects the rooms.
    owner.send_message(native, approve)
    wait_for_notice(portal.user, portal.room_id, bridge.ferry, "now connected")
    assert [n for n in notices_from(owner, native, bridge.ferry) if "asks to" in n] == [asks]


UPGRADE_TIMEOUT = 90


def upgrade(client: MatrixClient, room_id: str) -> str:
    path = f"{CLIENT_V3}/rooms/{_q(room_id)}/upgrade"
    replacement: str = client.request("POST", path, {"new_version": "12"})["replacement_room"]
    return replacement


def connected_portal(bridge: Bridge) -> tuple[Portal, MatrixClient, str]:
    """A portal connected by the homeserver admin to a native room; returns
    (portal, the native room's owner, the native room)."""
    portal = portal_room(bridge)
    owner, native = native_room(bridge)
    admin_connect(bridge.admin, portal.room_id, native)
    connect(owner, native, portal.room_id)
    wait_for_notice(portal.user, portal.room_id, bridge.ferry, "now connected")
    return portal, owner, native


def upgrade_native(bridge: Bridge, portal: Portal, owner: MatrixClient, room: str) -> str:
    """The native room's owner upgrades it; returns the successor once the
    connection has moved there."""
    new = upgrade(owner, room)
    wait_for_notice(owner, new, bridge.ferry, "now connected", timeout=UPGRADE_TIMEOUT)
    moved = f"({new}): the connection to the old room has ended"
    wait_for_notice(portal.user, portal.room_id, bridge.ferry, moved, timeout=UPGRADE_TIMEOUT)
    return new


def listed(client: MatrixClient, room_a: str, room_b: str) -> JsonDict:
    (entry,) = [
        e
        for e in admin_list_all(client, limit=100)
        if {r["room_id"] for r in e["rooms"]} == {room_a, room_b}
    ]
    return entry


def check_listing_after_upgrades(
    bridge: Bridge, portal: Portal, owner: MatrixClient, chain: list[str]
) -> None:
    """The native room went through ``chain`` (oldest first): the portal's
    consent, given to the first, counts for the last and says so."""
    current = chain[-1]
    entry = listed(bridge.admin, portal.room_id, current)
    assert entry["status"] == "active"
    rooms = {r["room_id"]: r for r in entry["rooms"]}
    portal_side, native_side = rooms[portal.room_id], rooms[current]
    assert portal_side["consent"]["sender"] == bridge.bot
    assert portal_side["consent"]["inherited_from"] == chain[0]
    assert portal_side["consent"]["ts"] > 0
    assert portal_side["predecessors"] == []
    assert portal_side["upgraded_to"] is None
    assert native_side["consent"]["sender"] == owner.user_id
    assert native_side["consent"]["inherited_from"] is None
    assert native_side["predecessors"] == chain[-2::-1]
    assert native_side["upgraded_to"] is None

    old = listed(bridge.admin, portal.room_id, chain[0])
    assert old["status"] == "revoked"
    first = {r["room_id"]: r for r in old["rooms"]}[chain[0]]
    assert first["upgraded_to"] == current
    assert first["consent"] is None  # a tombstoned room consents to nothing


def test_admin_api_follows_one_upgrade(bridge: Bridge) -> None:
    portal, owner, native = connected_portal(bridge)
    native2 = upgrade_native(bridge, portal, owner, native)
    check_listing_after_upgrades(bridge, portal, owner, [native, native2])

    # The old room is no longer where the connection lives, and says so.
    with pytest.raises(MatrixError) as raised:
        admin_revoke(bridge.admin, native, portal.room_id)
    assert raised.value.status == 404
    assert f"{native} was upgraded to {native2}" in str(raised.value.error)

    assert admin_revoke(bridge.admin, portal.room_id, native2)["status"] == "revoked"
    wait_for_notice(owner, native2, bridge.ferry, "has ended", timeout=UPGRADE_TIMEOUT)
    assert listed(bridge.admin, portal.room_id, native2)["status"] == "revoked"


def test_admin_api_follows_two_upgrades(bridge: Bridge) -> None:
    portal, owner, native = connected_portal(bridge)
    native2 = upgrade_native(bridge, portal, owner, native)
    native3 = upgrade_native(bridge, portal, owner, native2)
    check_listing_after_upgrades(bridge, portal, owner, [native, native2, native3])

    assert admin_revoke(bridge.admin, portal.room_id, native3)["status"] == "revoked"
    wait_for_notice(owner, native3, bridge.ferry, "has ended", timeout=UPGRADE_TIMEOUT)
    entry = listed(bridge.admin, portal.room_id, native3)
    assert entry["status"] == "revoked"
    assert {r["room_id"]: r for r in entry["rooms"]}[portal.room_id]["consent"] is None
