"""Commands answered once each, in order, across restarts, within the look-back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from synapse_room_connect.commands.queue import LOOKBACK_COMMANDS, LOOKBACK_MS, CommandQueue
from synapse_room_connect.store.events import TimelineRow
from tests.unit.stand_ins import Host, run_async

BOT = "@bot:hs"


@attrs.frozen
class Event:
    event_id: str
    stream: int
    body: str = "!connect list"
    room_id: str = "!r:hs"
    sender: str = "@admin:hs"

    @property
    def content(self) -> dict[str, Any]:
        return {"body": self.body}


class Cursor:
    """The persisted position and the events table, as far as commands go."""

    def __init__(self, position: int | None = None) -> None:
        self.position = position
        self.timeline: list[Event] = []
        self.reads: list[tuple[int, int, int, int]] = []

    async def command_position(self) -> int | None:
        return self.position

    async def set_command_position(self, position: int) -> None:
        self.position = max(position, self.position or position)

    async def commands_after(
        self, bot_user_id: str, after: int, upto: int, since_ts: int, limit: int
    ) -> list[TimelineRow]:
        self.reads.append((after, upto, since_ts, limit))
        rows = [
            TimelineRow(e.stream, e.event_id) for e in self.timeline if after < e.stream <= upto
        ]
        return rows[-limit:]


class Runner:
    def __init__(self) -> None:
        self.answered: list[str] = []

    async def handle(self, event: Any) -> None:
        self.answered.append(event.event_id)


class Process:
    """One run of the acting process over a shared cursor."""

    def __init__(self, cursor: Cursor) -> None:
        self.host = Host()
        self.runner = Runner()
        self.cursor = cursor

        async def fetch(ids: Sequence[str]) -> Mapping[str, Any]:
            return {e.event_id: e for e in cursor.timeline if e.event_id in ids}

        self.queue = CommandQueue(
            self.host,
            cursor,
            self.runner,
            fetch,
            BOT,
            stream_of=lambda e: e.stream,
            is_ghost=lambda user_id: user_id.startswith("@_ghost_"),
        )

    async def start(self, feed_start: int) -> None:
        self.queue.begin(feed_start)
        await self.queue.catch_up()
        await self.host.run_background()


@run_async
async def test_the_first_start_replays_nothing_and_sets_the_position() -> None:
    cursor = Cursor(None)
    cursor.timeline = [Event("$old", 5)]
    process = Process(cursor)
    await process.start(feed_start=10)
    assert process.runner.answered == []
    assert cursor.position == 10


@run_async
async def test_a_ghost_repeating_a_command_from_another_room_is_not_answered() -> None:
    cursor = Cursor(10)
    cursor.timeline = [Event("$ghost", 11, sender="@_ghost_abc:hs"), Event("$admin", 12)]
    process = Process(cursor)
    await process.start(feed_start=12)
    assert process.runner.answered == ["$admin"]


@run_async
async def test_commands_sent_while_down_are_answered_once_across_restarts() -> None:
    cursor = Cursor(10)
    cursor.timeline = [
        Event("$a", 11),
        Event("$chat", 12, body="hello"),
        Event("$b", 13),
    ]
    first = Process(cursor)
    await first.start(feed_start=13)
    assert first.runner.answered == ["$a", "$b"]
    assert cursor.position == 13
    again = Process(cursor)
    await again.start(feed_start=13)
    assert again.runner.answered == []


@run_async
async def test_live_commands_wait_for_the_catch_up_and_keep_their_order() -> None:
    cursor = Cursor(0)
    cursor.timeline = [Event("$down", 3)]
    process = Process(cursor)
    process.queue.begin(4)
    # The feed delivers a newer command before the catch-up has read.
    await process.queue.handle(Event("$live", 6))
    await process.host.run_background()
    assert process.runner.answered == []
    await process.queue.catch_up()
    await process.host.run_background()
    assert process.runner.answered == ["$down", "$live"]
    assert cursor.position == 6


@run_async
async def test_a_crash_mid_catch_up_resumes_after_the_last_answer() -> None:
    cursor = Cursor(0)
    cursor.timeline = [Event("$1", 1), Event("$2", 2), Event("$3", 3)]
    crashed = Process(cursor)

    async def crash_on_third(event: Any) -> None:
        if event.event_id == "$3":
            raise KeyboardInterrupt  # stands for the process dying mid-answer
        crashed.runner.answered.append(event.event_id)

    crashed.runner.handle = crash_on_third  # type: ignore[method-assign]
    crashed.queue.begin(3)
    await crashed.queue.catch_up()
    with contextlib.suppress(KeyboardInterrupt):
        await crashed.host.run_background()
    assert crashed.runner.answered == ["$1", "$2"]
    assert cursor.position == 2
    restarted = Process(cursor)
    await restarted.start(feed_start=3)
    assert restarted.runner.answered == ["$3"]


@run_async
async def test_the_look_back_is_bounded_in_time_and_count() -> None:
    cursor = Cursor(0)
    process = Process(cursor)
    await process.start(feed_start=50)
    [(after, upto, since_ts, limit)] = cursor.reads
    assert (after, upto, limit) == (0, 50, LOOKBACK_COMMANDS)
    assert since_ts == process.host.get_current_time_msec() - LOOKBACK_MS
    assert cursor.position == 50


@run_async
async def test_a_failed_catch_up_read_still_lets_live_commands_through() -> None:
    cursor = Cursor(0)
    process = Process(cursor)

    async def broken(*args: Any) -> list[TimelineRow]:
        raise RuntimeError("database gone")

    cursor.commands_after = broken  # type: ignore[method-assign]
    process.queue.begin(5)
    assert await process.queue.catch_up() == 0
    await process.queue.handle(Event("$stale", 4))
    await process.queue.handle(Event("$live", 7))
    await process.host.run_background()
    assert process.runner.answered == ["$live"]


@run_async
async def test_a_stop_lets_the_answer_in_hand_be_recorded_and_takes_no_more() -> None:
    cursor = Cursor(10)
    process = Process(cursor)
    await process.start(feed_start=10)
    release = asyncio.Event()
    answering: list[str] = []

    async def slow(event: Any) -> None:
        answering.append(event.event_id)
        await release.wait()

    process.runner.handle = slow  # type: ignore[method-assign]
    await process.queue.handle(Event("$first", 11))
    await process.queue.handle(Event("$second", 12))
    draining = asyncio.ensure_future(process.host.run_background())
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(process.queue.finish())
    await asyncio.sleep(0)
    assert answering == ["$first"]
    assert not stopping.done()  # the stop waits for the answer in hand

    release.set()
    await stopping
    await draining
    assert cursor.position == 11  # recorded: a restart does not answer it again
    assert answering == ["$first"]  # the next one waits for the next start
