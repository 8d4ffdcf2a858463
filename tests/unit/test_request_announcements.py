"""A request is announced in the asked room once the bot is in it, once per
request, also across restarts (reconciliation against in-memory stand-ins)."""

from __future__ import annotations

from typing import Any

import attrs

from synapse_room_connect.connections.reconcile import Reconciler
from synapse_room_connect.connections.request_announcements import RequestAnnouncements
from synapse_room_connect.core.handshake import Status
from tests.unit.stand_ins import MemoryAccountData, ReconcilerWorld, run_async

A, B = "!a:hs", "!b:hs"
ALICE = "@alice:hs"
ASKS = "#a asks to connect to this room. An admin here (power level 100) can approve with "


@attrs.define
class AccountDataApi:
    account_data_manager: Any


class World(ReconcilerWorld):
    def __init__(self) -> None:
        super().__init__()
        self.account_data = MemoryAccountData()
        self.reconciler = self.start()

    def start(self) -> Reconciler:
        """A new Reconciler, as after a restart: only the account data carries over."""

        async def label(room_id: str) -> str:
            return f"#{room_id[1]}"

        announcements = RequestAnnouncements(AccountDataApi(self.account_data), self.bot.user_id)
        return self.make_reconciler(
            label, 1, on_connections_changed=lambda: None, announcements=announcements
        )

    async def reconcile(self, room_id: str) -> None:
        self.reconciler.room_changed(room_id)
        await self.host.run_background()

    def asks_in(self, room_id: str) -> list[str]:
        return [n for n in self.bot.notices_in(room_id) if n.startswith(ASKS)]


@run_async
async def test_a_room_that_lets_the_bot_in_later_hears_of_the_request_once() -> None:
    world = World()
    world.bot.refused.add(B)
    world.rooms.consent(A, B, ALICE, world.bot.user_id)
    await world.reconcile(A)
    assert world.store.rows[(B, A)].status is Status.INCOMING
    assert world.asks_in(B) == []

    # An admin of B invites the bot: its join reconciles B again.
    world.bot.refused.discard(B)
    await world.reconcile(B)
    assert world.asks_in(B) == [ASKS + f"`!connect approve {A}`."]

    await world.reconcile(B)
    await world.reconcile(A)
    world.reconciler = world.start()
    await world.reconciler.reconcile_all()
    await world.host.run_background()
    assert len(world.asks_in(B)) == 1


@run_async
async def test_a_room_the_bot_is_in_hears_once_and_again_for_a_new_request() -> None:
    world = World()
    world.rooms.consent(A, B, ALICE, world.bot.user_id)
    await world.reconcile(A)
    world.reconciler = world.start()
    await world.reconciler.reconcile_all()
    await world.host.run_background()
    assert len(world.asks_in(B)) == 1

    # A withdraws, then asks again: a new request, announced again.
    world.rooms.withdraw(A, B)
    await world.reconcile(A)
    world.rooms.consent(A, B, ALICE, world.bot.user_id)
    again = attrs.evolve(world.rooms.consents[(A, B)], event_id="$asked-again")
    world.rooms.consents[(A, B)] = again
    await world.reconcile(A)
    assert len(world.asks_in(B)) == 2


@run_async
async def test_a_room_that_never_lets_the_bot_in_records_nothing() -> None:
    world = World()
    world.bot.refused.add(B)
    world.rooms.consent(A, B, ALICE, world.bot.user_id)
    await world.reconcile(A)
    await world.reconcile(B)
    assert world.asks_in(B) == []
    assert world.account_data.data == {}
