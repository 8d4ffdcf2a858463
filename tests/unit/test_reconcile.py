"""Reconciliation's transitions, against in-memory state, store and bot."""

from __future__ import annotations

import pytest

from synapse_room_connect.core.handshake import Mode, RoomTraits, Side, Status
from tests.unit.stand_ins import ReconcilerWorld, run_async

A, B = "!a:hs", "!b:hs"
ALICE, BOB = "@alice:hs", "@bob:hs"
SINCE = 42


class World(ReconcilerWorld):
    def __init__(self) -> None:
        super().__init__()
        self.changes = 0
        self.positions: list[tuple[str, str]] = []
        # Canonical aliases, for rooms named in commands.
        self.aliases: dict[str, str] = {}

        async def label(room_id: str) -> str:
            return f"#{room_id[1]}"

        async def position(side_a: Side, side_b: Side) -> int:
            self.positions.append((side_a.room_id, side_b.room_id))
            return SINCE

        def changed() -> None:
            self.changes += 1

        async def ref(room_id: str) -> str:
            return self.aliases.get(room_id, room_id)

        self.reconciler = self.make_reconciler(
            label, SINCE, activation_position=position, on_connections_changed=changed, address=ref
        )

    async def reconcile(self, room_id: str) -> None:
        self.reconciler.room_changed(room_id)
        await self.host.run_background()

    async def connect_both(self) -> None:
        self.rooms.consent(A, B, ALICE, self.bot.user_id)
        self.rooms.consent(B, A, BOB, self.bot.user_id)
        await self.reconcile(A)

    def status(self, here: str, other: str) -> Status:
        return self.store.rows[(here, other)].status


@pytest.fixture
def world() -> World:
    return World()


@run_async
async def test_request_approve_revoke(world: World) -> None:
    bot = world.bot
    world.rooms.consent(A, B, ALICE, bot.user_id)
    await world.reconcile(A)
    assert (world.status(A, B), world.status(B, A)) == (Status.REQUESTED, Status.INCOMING)
    assert bot.joins == [A, B]
    assert bot.notices_in(A) == [
        "Requested a connection from this room to #b. It becomes active once an admin there "
        f"approves it with `!connect approve {A}` (@bot:hs must be able to join that room)."
    ]
    assert bot.notices_in(B) == [
        f"#a asks to connect to this room. An admin here (power level 100) can approve "
        f"with `!connect approve {A}`."
    ]
    assert world.store.rows[(A, B)].since is None

    # Nothing changed: nothing is said twice.
    await world.reconcile(A)
    await world.reconcile(B)
    assert len(bot.notices) == 2

    world.rooms.consent(B, A, BOB, bot.user_id)
    await world.reconcile(B)
    assert (world.status(A, B), world.status(B, A)) == (Status.ACTIVE, Status.ACTIVE)
    assert (
        bot.notices_in(A)[-1] == "This room is now connected to #b; messages are shared both ways."
    )
    assert (
        bot.notices_in(B)[-1] == "This room is now connected to #a; messages are shared both ways."
    )
    assert world.store.rows[(A, B)].since == SINCE
    assert world.store.rows[(B, A)].since == SINCE
    assert sorted(world.positions[0]) == [A, B]
    assert len(world.positions) == 1
    changes_when_active = world.changes

    await world.reconcile(A)
    assert len(bot.notices) == 4
    assert world.changes == changes_when_active

    world.rooms.withdraw(B, A)
    await world.reconcile(B)
    assert (world.status(A, B), world.status(B, A)) == (Status.REVOKED, Status.REVOKED)
    ended = "The connection to #{} has ended; messages are no longer shared."
    assert bot.notices_in(A)[-1] == ended.format("b")
    assert bot.notices_in(B)[-1] == ended.format("a")
    assert sorted(bot.leaves) == [A, B]
    assert world.changes == changes_when_active + 1

    await world.reconcile(A)
    assert len(bot.notices) == 6


@run_async
async def test_mode_switch_is_announced_once(world: World) -> None:
    bot = world.bot
    await world.connect_both()
    assert world.status(A, B) is Status.ACTIVE
    before = len(bot.notices)

    encrypted = RoomTraits(encrypted=True, public=False)
    world.rooms.traits_of = {A: encrypted, B: encrypted}
    await world.reconcile(A)
    await world.reconcile(B)
    switched = bot.notices[before:]
    assert [room for room, _ in switched] == [A, B]
    assert all("End-to-end encryption is now on" in text for _, text in switched)
    assert world.store.rows[(A, B)].mode is Mode.CLIENT_FANOUT
    assert world.status(A, B) is Status.ACTIVE


@run_async
async def test_encryption_on_one_side_pauses(world: World) -> None:
    bot = world.bot
    await world.connect_both()
    world.rooms.traits_of = {A: RoomTraits(encrypted=True, public=False)}
    await world.reconcile(A)
    assert world.status(A, B) is Status.REQUESTED
    assert bot.notices_in(A)[-1].startswith(
        "The connection to #b is paused: one room is end-to-end"
    )
    assert bot.notices_in(B)[-1].startswith("The connection to #a is paused")


@run_async
async def test_a_room_that_refuses_the_bot_hears_nothing(world: World) -> None:
    bot = world.bot
    bot.refused.add(B)
    world.rooms.consent(A, B, ALICE, bot.user_id)
    await world.reconcile(A)
    assert world.status(B, A) is Status.INCOMING
    assert bot.notices_in(B) == []
    assert bot.joins == [A]


@run_async
async def test_another_servers_ferry_is_left_alone(world: World) -> None:
    world.rooms.consent(A, B, ALICE, "@ferry:other")
    await world.reconcile(A)
    assert world.status(A, B) is Status.REQUESTED
    assert world.bot.joins == []
    assert world.bot.notices == []
    assert world.changes == 0


@run_async
async def test_queue_drains_once_for_many_changes(world: World) -> None:
    world.rooms.consent(A, B, ALICE, world.bot.user_id)
    world.reconciler.room_changed(A)
    world.reconciler.room_changed(B)
    world.reconciler.room_changed(A)
    assert len(world.host.background) == 1
    await world.host.run_background()
    assert world.status(A, B) is Status.REQUESTED
    assert len(world.bot.notices) == 2


@run_async
async def test_a_request_names_the_asking_room_by_its_alias_in_the_approve_command(
    world: World,
) -> None:
    world.aliases[A] = "#a-alias:hs"
    world.rooms.consent(A, B, ALICE, world.bot.user_id)
    await world.reconcile(A)
    (incoming,) = world.bot.notices_in(B)
    assert incoming.endswith("can approve with `!connect approve #a-alias:hs`.")
