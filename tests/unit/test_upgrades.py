"""The successor rule for room upgrades, and what derivation and
reconciliation make of it, against in-memory room state."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest

from synapse_room_connect.connections.status import connected_rooms, derive_pair
from synapse_room_connect.core.ghosts import Senders
from synapse_room_connect.core.handshake import Consent, Status
from synapse_room_connect.core.upgrades import (
    MAX_HOPS,
    Link,
    carried_content,
    confirmed,
    latest,
    predecessor_in,
    predecessors,
    replacement_in,
    successors,
)
from synapse_room_connect.router import EventRouter
from synapse_room_connect.store import NewEvent
from tests.unit.stand_ins import (
    Host,
    MemoryRooms,
    MemoryStore,
    ReconcilerWorld,
    RecordingBot,
    run_async,
)

A, A2, A3, B, B2, C = "!a:hs", "!a2:hs", "!a3:hs", "!b:hs", "!b2:hs", "!c:hs"
ALICE, BOB = "@alice:hs", "@bob:hs"


def chain(*rooms: str) -> MemoryRooms:
    state = MemoryRooms()
    for old, new in itertools.pairwise(rooms):
        state.upgrade(old, new)
    return state


# -- reading a room's state ---------------------------------------------------------


def test_only_valid_room_ids_are_read_from_tombstone_and_create() -> None:
    assert replacement_in({"replacement_room": A2, "body": "moved"}) == A2
    assert replacement_in({"replacement_room": "#alias:hs"}) is None
    assert replacement_in({"replacement_room": 7}) is None
    assert replacement_in({}) is None
    assert predecessor_in({"predecessor": {"room_id": A, "event_id": "$x"}}) == A
    assert predecessor_in({"predecessor": A}) is None
    assert predecessor_in({"room_version": "12"}) is None


def test_an_upgrade_counts_only_when_both_rooms_say_so() -> None:
    old = Link(A, replacement=A2, tombstone_sender=ALICE)
    assert confirmed(old, Link(A2, predecessor=A))
    # A tombstone pointing at someone else's room hands it nothing.
    assert not confirmed(old, Link(A2, predecessor=C))
    assert not confirmed(old, Link(A2))
    assert not confirmed(Link(A, replacement=A, tombstone_sender=ALICE), Link(A, predecessor=A))


@run_async
async def test_the_chain_is_followed_both_ways() -> None:
    state = chain(A, A2, A3)
    assert await successors(A, state.link) == [A2, A3]
    assert await latest(A, state.link) == A3
    assert await latest(A3, state.link) == A3
    assert await predecessors(A3, state.link) == [A2, A]
    assert await predecessors(A, state.link) == []


@run_async
async def test_the_chain_stops_at_an_unconfirmed_link_a_cycle_and_max_hops() -> None:
    state = chain(A, A2)
    state.links[A2] = Link(A2, replacement=A3, predecessor=A, tombstone_sender=ALICE)
    # A3 never claims A2: the chain ends at A2.
    assert await successors(A, state.link) == [A2]

    cycle = chain(A, A2, A)
    assert await successors(A, cycle.link) == [A2]

    rooms = [f"!r{i}:hs" for i in range(MAX_HOPS + 5)]
    long = chain(*rooms)
    assert len(await successors(rooms[0], long.link)) == MAX_HOPS
    assert len(await predecessors(rooms[-1], long.link)) == MAX_HOPS


def test_the_carried_consent_keeps_ferry_servers_and_acknowledgements() -> None:
    consent = Consent(
        room_id=A,
        other_room_id=B,
        via=("hs", "other"),
        ferry="@bot:hs",
        acknowledge=frozenset({"visibility_mismatch", "encryption_mismatch"}),
        sender=ALICE,
        event_id="$c",
    )
    assert carried_content(consent, B2) == {
        "room_id": B2,
        "via": ["hs", "other"],
        "ferry": "@bot:hs",
        "acknowledge": ["encryption_mismatch", "visibility_mismatch"],
    }
    # Who the room asked to send into it goes along too.
    bot_please = attrs.evolve(consent, senders=Senders.BOT)
    assert carried_content(bot_please, B2)["senders"] == "bot"


# -- derivation ---------------------------------------------------------------------


def connected(state: MemoryRooms) -> None:
    state.consent(A, B, ALICE, "@bot:hs")
    state.consent(B, A, BOB, "@bot:hs")


@run_async
async def test_the_other_rooms_consent_counts_for_the_successor() -> None:
    state = chain(A, A2)
    connected(state)
    state.consent(A2, B, ALICE, "@bot:hs")
    pair = await derive_pair(state, A2, B)
    assert (pair.a.verdict.status, pair.b.verdict.status) == (Status.ACTIVE, Status.ACTIVE)
    # B's consent is the one it gave A: no new approval there.
    assert pair.b.here.consent is not None
    assert pair.b.here.consent.other_room_id == A

    old = await derive_pair(state, B, A)
    assert old.a.verdict.status is Status.REVOKED
    assert old.a.there_upgraded_to == A2
    assert old.b.here_upgraded_to == A2
    assert await connected_rooms(state, MemoryStore(), B) == sorted([A, A2])


@run_async
async def test_the_successor_still_needs_its_own_consent() -> None:
    state = chain(A, A2)
    connected(state)
    pair = await derive_pair(state, A2, B)
    assert (pair.a.verdict.status, pair.b.verdict.status) == (Status.INCOMING, Status.REQUESTED)


@run_async
async def test_a_withdrawal_for_the_old_room_holds_for_the_successor() -> None:
    state = chain(A, A2)
    connected(state)
    state.consent(A2, B, ALICE, "@bot:hs")
    state.withdraw(B, A)
    assert (await derive_pair(state, A2, B)).a.verdict.status is Status.REVOKED


@run_async
async def test_a_tombstone_naming_a_room_that_does_not_claim_it_carries_nothing() -> None:
    state = MemoryRooms()
    connected(state)
    state.links[A] = Link(A, replacement=C, tombstone_sender=ALICE)
    state.consent(C, B, "@mallory:hs", "@bot:hs")
    assert (await derive_pair(state, C, B)).a.verdict.status is Status.REQUESTED
    # The tombstone still ends the old room's connection.
    assert (await derive_pair(state, A, B)).a.verdict.status is Status.REVOKED


@run_async
async def test_both_rooms_upgraded_either_order() -> None:
    for first, second in ((A, B), (B, A)):
        state = MemoryRooms()
        connected(state)
        state.upgrade(first, first.replace("!", "!n"))
        state.upgrade(second, second.replace("!", "!n"))
        new_a, new_b = "!na:hs", "!nb:hs"
        # Each successor copied its predecessor's consent, naming the other
        # room as it was when it was upgraded.
        state.consent(new_a, B if first == A else new_b, ALICE, "@bot:hs")
        state.consent(new_b, A if first == B else new_a, BOB, "@bot:hs")
        pair = await derive_pair(state, new_a, new_b)
        assert pair.a.verdict.status is Status.ACTIVE, (first, second)


# -- reconciliation and routing ------------------------------------------------------


class World(ReconcilerWorld):
    def __init__(self) -> None:
        super().__init__()
        self.followed: list[str] = []

        async def label(room_id: str) -> str:
            return f"#{room_id[1:].split(':')[0]}"

        async def follow(old_room: str) -> None:
            self.followed.append(old_room)

        self.follower: Any = type("Follower", (), {"follow": staticmethod(follow)})()
        self.reconciler = self.make_reconciler(
            label, 1, on_connections_changed=lambda: None, upgrades=self.follower
        )

    async def upgraded(self, room_id: str) -> None:
        self.reconciler.room_upgraded(room_id)
        await self.host.run_background()


@pytest.fixture
def world() -> World:
    w = World()
    connected(w.rooms)
    return w


@run_async
async def test_upgrade_ends_the_old_connection_with_a_notice_naming_the_successor(
    world: World,
) -> None:
    bot = world.bot
    await world.upgraded(A)  # primes the cache with the pair as active
    world.rooms.upgrade(A, A2)
    bot.notices.clear()
    await world.upgraded(A)
    assert world.followed == [A, A]
    assert world.store.rows[(B, A)].status is Status.REVOKED
    assert bot.notices_in(B) == [
        "#a was upgraded to #a2: the connection to the old room has ended and carries on "
        "with #a2, with no new approval needed here."
    ]
    # The successor has not consented yet: nobody is told of a request.
    world.reconciler.room_changed(B)
    await world.host.run_background()
    assert world.store.rows[(B, A2)].status is Status.REQUESTED
    assert bot.notices_in(A2) == []
    # The bot stays: in B for the successor, in A so the chain stays readable.
    assert bot.leaves == []

    world.rooms.consent(A2, B, ALICE, bot.user_id)
    world.reconciler.room_changed(A2)
    await world.host.run_background()
    assert world.store.rows[(B, A2)].status is Status.ACTIVE
    assert [t.split(";")[0] for t in bot.notices_in(B)][-1] == "This room is now connected to #a2"


@run_async
async def test_a_tombstone_reaches_reconciliation_as_an_upgrade() -> None:
    class Reconciliation:
        def __init__(self) -> None:
            self.upgraded: list[str] = []

        def room_changed(self, room_id: str) -> None:
            pass

        def room_upgraded(self, room_id: str) -> None:
            self.upgraded.append(room_id)

    class Ferry:
        active_rooms: frozenset[str] = frozenset()

        def events_in(self, room_ids: Any) -> None:
            pass

    reconciliation = Reconciliation()
    router = EventRouter(Host(), RecordingBot(), Ferry(), reconciliation, None, None)  # type: ignore[arg-type]
    await router.on_new_events(
        [
            NewEvent(1, "$t", A, "m.room.tombstone", ALICE, ""),
            NewEvent(2, "$odd", B, "m.room.tombstone", ALICE, "not-empty"),
        ]
    )
    assert reconciliation.upgraded == [A]


@run_async
async def test_start_up_follows_every_tombstoned_room_again_and_once_at_a_time(
    world: World,
) -> None:
    # The process stopped while following A's upgrade: start-up resumes it.
    await world.upgraded(A)
    world.rooms.upgrade(A, A2)
    world.followed.clear()
    world.bot.joined.update({A, B})
    await world.reconciler.reconcile_all()
    # A tombstone read live at the same moment does not start a second one.
    world.reconciler.room_upgraded(A)
    await world.host.run_background()
    assert world.followed == [A]
