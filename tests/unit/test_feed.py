"""The feed's skip rule against a stand-in of Synapse's in-memory stream
caches: no database read when they show nothing the module could care about."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, cast

from synapse.module_api import ModuleApi

from synapse_room_connect.feed import Feed
from synapse_room_connect.store import NewEvent

WATCHED, ELSEWHERE = "!connected:hs1", "!quiet:hs1"


class StandInStream:
    """Positions and the rooms changed at each, as Synapse's caches tell them."""

    def __init__(self) -> None:
        self.position = 10
        self.events: list[tuple[int, str]] = []
        self.state_changes: list[tuple[int, str]] = []
        self.reaches_back_to = 0  # older positions are not cached
        self.callbacks: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def current_position(self) -> int:
        return self.position

    def rooms_with_events_since(self, position: int) -> Collection[str] | None:
        if position < self.reaches_back_to:
            return None
        return {room for stream, room in self.events if stream > position}

    def rooms_with_state_changes_since(self, position: int) -> Collection[str] | None:
        if position < self.reaches_back_to:
            return None
        return {room for stream, room in self.state_changes if stream > position}

    def persist(self, room_id: str, *, state: bool = False) -> None:
        self.position += 1
        self.events.append((self.position, room_id))
        if state:
            self.state_changes.append((self.position, room_id))
        for callback in self.callbacks:
            callback()


class StandInStore:
    def __init__(self, stream: StandInStream) -> None:
        self._stream = stream
        self.reads = 0

    async def new_events(self, after: int, upto: int, limit: int) -> list[NewEvent]:
        self.reads += 1
        return [
            NewEvent(stream, f"$e{stream}", room, "m.room.message", "@alice:hs1")
            for stream, room in self._stream.events
            if after < stream <= upto
        ][:limit]


class BackgroundRunner:
    """The two ``ModuleApi`` calls the feed makes; background work is kept
    here and run when the test says so."""

    def __init__(self) -> None:
        self.pending: list[Awaitable[Any]] = []

    def run_as_background_process(
        self, desc: str, func: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        self.pending.append(func(*args))

    def delayed_background_call(self, msec: float, f: Callable[[], None], desc: str) -> None:
        raise AssertionError("the feed failed")

    def run_pending(self) -> None:
        pending, self.pending = self.pending, []
        for work in pending:
            asyncio.run(cast(Any, work))


class Rig:
    def __init__(self) -> None:
        self.stream = StandInStream()
        self.store = StandInStore(self.stream)
        self.runner = BackgroundRunner()
        self.delivered: list[NewEvent] = []
        self.feed = Feed(
            cast(ModuleApi, self.runner),
            self.store,
            self._consume,
            lambda rooms: WATCHED in rooms,
            stream=self.stream,
        )
        self.feed.start()

    async def _consume(self, rows: Sequence[NewEvent]) -> None:
        self.delivered.extend(rows)


def test_events_only_in_unwatched_rooms_cost_no_read() -> None:
    rig = Rig()
    for _ in range(5):
        rig.stream.persist(ELSEWHERE)
    # Not even a background run is started.
    assert rig.runner.pending == []
    assert rig.store.reads == 0
    # Nor later: the position moved past them.
    rig.stream.persist(WATCHED)
    rig.runner.run_pending()
    assert [e.room_id for e in rig.delivered] == [WATCHED]


def test_an_event_in_a_watched_room_is_read_and_delivered() -> None:
    rig = Rig()
    rig.stream.persist(WATCHED)
    rig.runner.run_pending()

    assert rig.store.reads == 1
    assert [e.event_id for e in rig.delivered] == ["$e11"]


def test_a_state_change_anywhere_is_read() -> None:
    rig = Rig()
    rig.stream.persist(ELSEWHERE, state=True)  # e.g. an invite of the bot
    rig.runner.run_pending()

    assert rig.store.reads == 1
    assert [e.room_id for e in rig.delivered] == [ELSEWHERE]


def test_events_arriving_before_a_started_read_runs_cost_no_second_read() -> None:
    rig = Rig()
    rig.stream.persist(WATCHED)
    # The read is started, not run yet; more events arrive.
    rig.stream.persist(ELSEWHERE)
    rig.stream.persist(ELSEWHERE)
    rig.runner.run_pending()

    assert rig.store.reads == 1
    assert [e.room_id for e in rig.delivered] == [WATCHED, ELSEWHERE, ELSEWHERE]


def test_when_the_caches_do_not_reach_back_the_feed_reads() -> None:
    rig = Rig()
    rig.stream.reaches_back_to = 100
    rig.stream.persist(ELSEWHERE)
    rig.runner.run_pending()

    assert rig.store.reads == 1


def test_no_new_position_no_work() -> None:
    rig = Rig()
    for callback in rig.stream.callbacks:
        callback()  # a notification of another stream: no new events
    assert rig.runner.pending == []
    assert rig.store.reads == 0
