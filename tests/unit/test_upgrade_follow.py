"""Carrying consents over to a successor room, or telling the rooms how to
reconnect, against in-memory rooms and a recording homeserver."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from synapse.api.errors import Codes, SynapseError

from synapse_room_connect.connections.upgrade_follow import (
    FERRY_JOIN_ATTEMPTS,
    GRACE_SECONDS,
    UpgradeFollower,
)
from synapse_room_connect.constants import CONNECTION_EVENT_TYPE
from synapse_room_connect.core.handshake import Side
from synapse_room_connect.core.upgrades import Link
from tests.unit.stand_ins import MemoryAccountData, MemoryRooms, RecordingBot, run_async

A, A2, B = "!a:hs", "!a2:hs", "!b:hs"
ALICE, BOB, CAROL = "@alice:hs", "@bob:hs", "@carol:other"
BOT, OTHER_BOT = "@bot:hs", "@bot:other"


class Rooms(MemoryRooms):
    """MemoryRooms whose connection events can be read back as sides."""

    async def connection_events(self, room_id: str) -> dict[str, Any]:
        keys = [key for key in [*self.consents, *self.withdrawn] if key[0] == room_id]
        return {other: (here, other) for here, other in keys}

    async def side_from_event(self, event: Any) -> Side:
        here, other = event
        return await self.side(here, other)


@attrs.frozen
class Member:
    content: dict[str, str]


class ProcessStoppedError(Exception):
    """The process stopped while a follow-up waited."""


class Api:
    def __init__(self, rooms: Rooms) -> None:
        self.rooms = rooms
        self.account_data_manager = MemoryAccountData()
        # Sleeps before the process stops in the middle of one.
        self.stop_after_sleeps: int | None = None
        self.sent: list[dict[str, Any]] = []
        self.invites: list[tuple[str, str, str]] = []
        self.slept: list[float] = []
        self.refuse = False
        # Users that accept an invite at once.
        self.joiners: set[str] = set()
        self.members: set[tuple[str, str]] = set()

    def is_mine(self, user_id: str) -> bool:
        return user_id.endswith(":hs")

    async def sleep(self, seconds: float) -> None:
        if self.stop_after_sleeps is not None:
            if self.stop_after_sleeps == 0:
                self.stop_after_sleeps = None
                raise ProcessStoppedError()
            self.stop_after_sleeps -= 1
        self.slept.append(seconds)

    async def create_and_send_event_into_room(self, event_dict: dict[str, Any]) -> Any:
        if self.refuse:
            raise SynapseError(403, "needs power level 100", Codes.FORBIDDEN)
        self.sent.append(event_dict)
        content = event_dict["content"]
        self.rooms.consent(
            event_dict["room_id"], event_dict["state_key"], event_dict["sender"], content["ferry"]
        )
        return None

    async def update_room_membership(
        self, sender: str, target: str, room_id: str, new_membership: str
    ) -> Any:
        self.invites.append((sender, target, room_id))
        if target in self.joiners:
            self.members.add((room_id, target))
        return None

    async def get_room_state(self, room_id: str, event_filter: Any = None) -> Any:
        key = event_filter[0]
        if (room_id, key[1]) in self.members:
            return {key: Member({"membership": "join"})}
        return {}


class World:
    def __init__(self, upgrader: str = ALICE, ferry: str = BOT) -> None:
        self.rooms = Rooms()
        self.rooms.consent(A, B, ALICE, ferry)
        self.rooms.consent(B, A, BOB, ferry)
        self.rooms.upgrade(A, A2, sender=upgrader)
        self.api = Api(self.rooms)
        self.bot = RecordingBot(BOT)
        self.bot.joined.add(B)

        async def label(room_id: str) -> str:
            return f"#{room_id[1:].split(':')[0]}"

        self.label = label
        self.follower = UpgradeFollower(self.api, self.rooms, self.bot, label)

    async def follow(self) -> None:
        await self.follower.follow(A)

    async def restart_and_follow(self) -> None:
        """A new process over the same rooms and account data, following the
        tombstone again as start-up reconciliation does."""
        self.follower = UpgradeFollower(self.api, self.rooms, self.bot, self.label)
        await self.follow()


@run_async
async def test_a_local_upgrader_consents_in_the_successor_as_themselves() -> None:
    world = World()
    await world.follow()
    assert world.api.sent == [
        {
            "type": CONNECTION_EVENT_TYPE,
            "room_id": A2,
            "sender": ALICE,
            "state_key": B,
            "content": {"room_id": B, "via": ["hs"], "ferry": BOT},
        }
    ]
    assert world.bot.notices == []
    # Again (a restart, a second tombstone read): nothing new is sent.
    await world.follow()
    assert len(world.api.sent) == 1


@run_async
async def test_a_refused_consent_tells_both_rooms_the_command() -> None:
    world = World()
    world.api.refuse = True
    world.bot.joined.add(A2)
    await world.follow()
    assert world.api.sent == []
    (in_b,) = world.bot.notices_in(B)
    assert world.bot.notices_in(A2) == [in_b]
    assert f"`!connect request {B}`" in in_b
    path = f"/_matrix/client/v3/rooms/{A2}/state/{CONNECTION_EVENT_TYPE}/{B}"
    assert in_b.endswith(f'{path} {{"room_id": "{B}", "via": ["hs"], "ferry": "{BOT}"}}')
    # A restart explains no second time.
    await world.restart_and_follow()
    assert len(world.bot.notices_in(B)) == len(world.bot.notices_in(A2)) == 1


@run_async
async def test_another_servers_ferry_is_brought_in_before_the_consent() -> None:
    world = World(ferry=OTHER_BOT)
    world.api.joiners.add(OTHER_BOT)
    await world.follow()
    assert world.api.invites == [(ALICE, OTHER_BOT, A2)]
    assert [e["content"]["ferry"] for e in world.api.sent] == [OTHER_BOT]


@run_async
async def test_a_ferry_that_never_joins_gets_no_consent_and_this_bot_stays_quiet() -> None:
    world = World(ferry=OTHER_BOT)
    await world.follow()
    assert world.api.sent == []
    assert world.api.slept == [1] * FERRY_JOIN_ATTEMPTS
    # The ferry's own server tells the rooms; this one has no bot there.
    assert world.bot.notices == []


@run_async
async def test_a_remote_upgrade_not_carried_over_is_explained_after_the_grace() -> None:
    world = World(upgrader=CAROL)
    await world.follow()
    assert world.api.slept == [GRACE_SECONDS]
    assert world.api.sent == []
    # The bot entered the successor to say it there as well.
    assert A2 in world.bot.joins
    assert len(world.bot.notices_in(B)) == len(world.bot.notices_in(A2)) == 1


@run_async
async def test_a_remote_upgrade_carried_over_by_its_server_is_left_alone() -> None:
    world = World(upgrader=CAROL)
    world.rooms.consent(A2, B, CAROL, BOT)
    await world.follow()
    assert world.bot.notices == []


@run_async
async def test_nothing_is_carried_to_a_room_that_does_not_name_the_old_one() -> None:
    world = World()
    world.rooms.links[A2] = Link(A2)
    await world.follow()
    assert world.api.sent == []
    assert world.bot.notices == []


@run_async
async def test_a_restart_during_the_grace_explains_once_after_start_up() -> None:
    world = World(upgrader=CAROL)
    world.api.stop_after_sleeps = 0
    with pytest.raises(ProcessStoppedError):
        await world.follow()
    assert world.bot.notices == []
    await world.restart_and_follow()
    assert len(world.bot.notices_in(B)) == len(world.bot.notices_in(A2)) == 1
    # Every later start-up finds the follow-up settled: no second explanation.
    await world.restart_and_follow()
    assert len(world.bot.notices) == 2
    assert world.api.slept == [GRACE_SECONDS]


@run_async
async def test_a_restart_while_waiting_for_another_servers_ferry_still_consents_once() -> None:
    world = World(ferry=OTHER_BOT)
    world.api.joiners.add(OTHER_BOT)
    # The invite went out; the process stopped before the ferry's join was seen.
    world.api.members.discard((A2, OTHER_BOT))
    world.api.joiners.discard(OTHER_BOT)
    world.api.stop_after_sleeps = 0
    with pytest.raises(ProcessStoppedError):
        await world.follow()
    assert world.api.sent == []
    world.api.members.add((A2, OTHER_BOT))  # it joined meanwhile
    await world.restart_and_follow()
    # Not invited again (it is in the room), and the consent goes out once.
    assert world.api.invites == [(ALICE, OTHER_BOT, A2)]
    assert [e["content"]["ferry"] for e in world.api.sent] == [OTHER_BOT]
    await world.restart_and_follow()
    assert len(world.api.sent) == 1


@run_async
async def test_a_ferry_that_never_joined_is_not_waited_for_again_after_a_restart() -> None:
    world = World(ferry=OTHER_BOT)
    await world.follow()
    await world.restart_and_follow()
    assert world.api.slept == [1] * FERRY_JOIN_ATTEMPTS
    assert world.api.invites == [(ALICE, OTHER_BOT, A2)]
