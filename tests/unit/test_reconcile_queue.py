"""Reconciliation of many rooms at once: independent pairs run together up
to the bound, pairs that share a room one after the other, and a failure
stays with its pair. Background processes run as asyncio tasks here, and
the bot's joins wait at gates the tests open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from synapse_room_connect.core.handshake import Status
from tests.unit.stand_ins import Host, ReconcilerWorld, RecordingBot, run_async

ALICE, BOB = "@alice:hs", "@bob:hs"
BOUND = 3
CONNECTED = "This room is now connected to #{}; messages are shared both ways."
ENDED = "The connection to #{} has ended; messages are no longer shared."


class TaskHost(Host):
    """Each background process is a task of its own, as on the reactor."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[asyncio.Task[Any]] = []

    def run_as_background_process(
        self, desc: str, func: Callable[..., Awaitable[Any]], *args: Any
    ) -> object:
        async def run() -> None:
            await func(*args)

        self.tasks.append(asyncio.ensure_future(run()))
        return None

    async def until_still(self) -> None:
        """Until every task has finished or waits at a closed gate."""
        for _ in range(500):
            await asyncio.sleep(0)

    async def finish(self) -> None:
        while pending := [t for t in self.tasks if not t.done()]:
            await asyncio.wait(pending)


class GatedBot(RecordingBot):
    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, asyncio.Event] = {}
        self.waiting: set[str] = set()
        self.most_waiting = 0
        self.failing: set[str] = set()

    async def join(self, room_id: str, via: list[str], inviter: str | None = None) -> bool:
        if room_id in self.failing:
            raise RuntimeError(f"the homeserver failed a join of {room_id}")
        gate = self.gates.get(room_id)
        if gate is not None:
            self.waiting.add(room_id)
            self.most_waiting = max(self.most_waiting, len(self.waiting))
            await gate.wait()
            self.waiting.discard(room_id)
        return await super().join(room_id, via, inviter)

    def gate(self, *rooms: str) -> None:
        for room in rooms:
            self.gates[room] = asyncio.Event()

    def open(self) -> None:
        for gate in self.gates.values():
            gate.set()


class World(ReconcilerWorld):
    def __init__(self) -> None:
        super().__init__()
        self.host = TaskHost()
        self.bot = GatedBot()

        async def label(room_id: str) -> str:
            return "#" + room_id[1:].split(":")[0]

        self.reconciler = self.make_reconciler(
            label, 42, on_connections_changed=lambda: None, concurrency=BOUND
        )

    def connect(self, a: str, b: str) -> None:
        self.rooms.consent(a, b, ALICE, self.bot.user_id)
        self.rooms.consent(b, a, BOB, self.bot.user_id)

    def status(self, here: str, other: str) -> Status | None:
        row = self.store.rows.get((here, other))
        return None if row is None else row.status


def room(name: str) -> str:
    return f"!{name}:hs"


@pytest.fixture
def world() -> World:
    return World()


@run_async
async def test_independent_pairs_are_reconciled_at_once_up_to_the_bound(world: World) -> None:
    pairs = [(room(f"a{i}"), room(f"b{i}")) for i in range(5)]
    for a, b in pairs:
        world.connect(a, b)
        world.bot.gate(a)
        world.reconciler.room_changed(a)
    await world.host.until_still()
    assert len(world.bot.waiting) == BOUND

    world.bot.open()
    await world.host.finish()
    assert world.bot.most_waiting == BOUND
    for a, b in pairs:
        assert (world.status(a, b), world.status(b, a)) == (Status.ACTIVE, Status.ACTIVE)
        assert world.bot.notices_in(a) == [CONNECTED.format(b[1:3])]
        assert world.bot.notices_in(b) == [CONNECTED.format(a[1:3])]


@run_async
async def test_pairs_that_share_a_room_wait_for_each_other(world: World) -> None:
    a, b, c, d, e = (room(x) for x in "abcde")
    world.connect(a, b)
    world.connect(a, c)
    world.connect(d, e)
    world.bot.gate(a)
    world.reconciler.room_changed(a)
    world.reconciler.room_changed(d)
    await world.host.until_still()
    # One pair with A is held at the bot's join into A; the other has not
    # begun, not even read its cache rows; D and E are not held up.
    assert world.bot.waiting == {a}
    held = [other for other in (b, c) if world.status(a, other) is not None]
    assert len(held) == 1
    assert (world.status(d, e), world.status(e, d)) == (Status.ACTIVE, Status.ACTIVE)

    world.bot.open()
    await world.host.finish()
    for other in (b, c):
        assert (world.status(a, other), world.status(other, a)) == (Status.ACTIVE, Status.ACTIVE)
    assert sorted(world.bot.notices_in(a)) == [CONNECTED.format("b"), CONNECTED.format("c")]


@run_async
async def test_a_change_during_a_reconciliation_is_reconciled_after_it(world: World) -> None:
    a, b = room("a"), room("b")
    world.connect(a, b)
    world.bot.gate(a)
    world.reconciler.room_changed(a)
    await world.host.until_still()
    assert world.bot.waiting == {a}

    world.rooms.withdraw(b, a)
    world.reconciler.room_changed(b)
    await world.host.until_still()
    assert world.bot.waiting == {a}
    assert world.status(b, a) is Status.ACTIVE  # not yet reconciled again

    world.bot.open()
    await world.host.finish()
    assert (world.status(a, b), world.status(b, a)) == (Status.REVOKED, Status.REVOKED)
    # Each notice once, in the order of the changes.
    assert world.bot.notices_in(a) == [CONNECTED.format("b"), ENDED.format("b")]
    assert world.bot.notices_in(b) == [CONNECTED.format("a"), ENDED.format("a")]


@run_async
async def test_a_failing_pair_is_logged_and_the_others_go_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c, d = (room(x) for x in "abcd")
    world.connect(a, b)
    world.connect(c, d)
    world.bot.failing.add(a)
    with caplog.at_level(logging.ERROR):
        world.reconciler.room_changed(a)
        world.reconciler.room_changed(c)
        await world.host.finish()
    assert (world.status(c, d), world.status(d, c)) == (Status.ACTIVE, Status.ACTIVE)
    assert world.bot.notices_in(c) == [CONNECTED.format("d")]
    failures = [r for r in caplog.records if "Failed to reconcile" in r.getMessage()]
    assert len(failures) == 1
    assert a in failures[0].getMessage()

    # The failure is not remembered: the next change of A tries again.
    world.bot.failing.clear()
    world.reconciler.room_changed(a)
    await world.host.finish()
    assert (world.status(a, b), world.status(b, a)) == (Status.ACTIVE, Status.ACTIVE)


@run_async
async def test_a_room_whose_connections_cannot_be_read_does_not_stop_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c, d = (room(x) for x in "abcd")
    world.connect(a, b)
    world.connect(c, d)
    unreadable = world.rooms.connection_events

    async def connection_events(room_id: str) -> dict[str, Any]:
        if room_id == a:
            raise RuntimeError("the database went away")
        return await unreadable(room_id)

    world.rooms.connection_events = connection_events  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        world.reconciler.room_changed(a)
        world.reconciler.room_changed(c)
        await world.host.finish()
    assert world.status(a, b) is None
    assert (world.status(c, d), world.status(d, c)) == (Status.ACTIVE, Status.ACTIVE)
    assert any(
        "Failed to read the connections of" in r.getMessage() and a in r.getMessage()
        for r in caplog.records
    )
