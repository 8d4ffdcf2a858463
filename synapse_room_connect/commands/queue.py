"""Answering `!connect` commands one at a time, in stream order, exactly once
across restarts of the acting process.

The feed starts at the newest position when the process starts, so commands
sent while it was down would never reach the router. The last command
answered is kept as a position (store/commands.py); at start-up the commands
after it are answered first, bounded to the last ``LOOKBACK_MS`` and at most
``LOOKBACK_COMMANDS`` of them, so a long outage does not replay old commands.
The position moves after each answer: a crash between an answer and that
write is the only way a command is answered twice.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import attrs
from synapse.module_api import EventBase

from synapse_room_connect import synapse_compat
from synapse_room_connect.commands.runner import is_command
from synapse_room_connect.store.events import TimelineRow

logger = logging.getLogger(__name__)

LOOKBACK_MS: Final = 24 * 60 * 60 * 1000
LOOKBACK_COMMANDS: Final = 100
# How long a stopping process waits for the command being answered to be
# recorded: an answer whose position is not stored is answered again.
FINISH_WAIT_SECONDS: Final = 10.0
_FINISH_POLL_SECONDS: Final = 0.05


class CommandQueueHost(Protocol):
    def get_current_time_msec(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...

    def run_as_background_process(
        self, desc: str, func: Callable[..., Awaitable[Any]], *args: Any
    ) -> object: ...


class CursorStore(Protocol):
    async def command_position(self) -> int | None: ...

    async def set_command_position(self, position: int) -> None: ...

    async def commands_after(
        self, bot_user_id: str, after: int, upto: int, since_ts: int, limit: int
    ) -> list[TimelineRow]: ...


class Runner(Protocol):
    async def handle(self, event: EventBase) -> None: ...


FetchEvents = Callable[[Sequence[str]], Awaitable[Mapping[str, EventBase]]]
StreamOf = Callable[[EventBase], int | None]


@attrs.define
class CommandQueue:
    _host: CommandQueueHost
    _store: CursorStore
    _runner: Runner
    _fetch_events: FetchEvents
    _bot_user_id: str
    _stream_of: StreamOf = attrs.field(kw_only=True, default=synapse_compat.stream_ordering_of)
    # The ferry's ghosts repeat other rooms' words: never commands here.
    _is_ghost: Callable[[str], bool] = attrs.field(kw_only=True, default=lambda _user_id: False)
    _heap: list[tuple[int, str, EventBase]] = attrs.field(init=False, factory=list)
    # Commands at or before it are answered (or out of the look-back).
    _answered_upto: int = attrs.field(init=False, default=0)
    # Where the live feed starts; None until begin().
    _feed_start: int | None = attrs.field(init=False, default=None)
    _caught_up: bool = attrs.field(init=False, default=False)
    _draining: bool = attrs.field(init=False, default=False)

    def begin(self, feed_start: int) -> None:
        """Called with the position the feed starts from, right before it
        starts: the catch-up reads up to it, the feed after it."""
        self._feed_start = feed_start

    async def catch_up(self) -> int:
        """Queue the commands sent since the last one answered; returns how many.

        Never raises: a failed read skips the replay (logged) rather than
        hold up start-up or the commands that arrive live."""
        upto = self._feed_start
        assert upto is not None, "begin() first"
        try:
            return await self._catch_up(upto)
        except Exception:
            logger.exception("Could not read the commands sent while this process was down")
            self._answered_upto = upto
            self._caught_up = True
            self._kick()
            return 0

    async def _catch_up(self, upto: int) -> int:
        position = await self._store.command_position()
        replay: list[tuple[int, EventBase]] = []
        if position is None:
            # First start with a cursor: earlier commands were answered by a
            # release that kept none.
            position = upto
        else:
            since = self._host.get_current_time_msec() - LOOKBACK_MS
            rows = await self._store.commands_after(
                self._bot_user_id, position, upto, since, LOOKBACK_COMMANDS
            )
            events = await self._fetch_events([r.event_id for r in rows])
            for row in rows:
                event = events.get(row.event_id)
                if (
                    event is not None
                    and not self._is_ghost(event.sender)
                    and is_command(event.content.get("body"))
                ):
                    replay.append((row.stream, event))
        if not replay:
            await self._store.set_command_position(upto)
        else:
            logger.info("Answering %d command(s) sent while this process was down", len(replay))
        self._answered_upto = position
        for stream, event in replay:
            heapq.heappush(self._heap, (stream, event.event_id, event))
        self._caught_up = True
        self._kick()
        return len(replay)

    async def handle(self, event: EventBase) -> None:
        """A command the feed just read (the router's entry point)."""
        stream = self._stream_of(event)
        if stream is None:
            # Not a persisted timeline event: nothing to order or resume by.
            await self._answer(event)
            return
        heapq.heappush(self._heap, (stream, event.event_id, event))
        self._kick()

    async def finish(self) -> None:
        """At shutdown: let the command being answered be recorded, so a
        clean stop never answers a command twice (the queue takes no new
        one after it). Bounded: a stuck answer does not hold the stop."""
        self._caught_up = False
        waited = 0.0
        while self._draining and waited < FINISH_WAIT_SECONDS:
            await self._host.sleep(_FINISH_POLL_SECONDS)
            waited += _FINISH_POLL_SECONDS
        if self._draining:
            logger.warning("Stopping while a command is still being answered")

    def _kick(self) -> None:
        if self._caught_up and not self._draining and self._heap:
            self._draining = True
            self._host.run_as_background_process("room_connect_commands", self._drain)

    async def _drain(self) -> None:
        # One at a time: answers keep the order commands were sent in, and the
        # position only ever moves past answered commands.
        try:
            while self._heap and self._caught_up:
                stream, _, event = heapq.heappop(self._heap)
                if stream <= self._answered_upto:
                    continue  # read by both the catch-up and the feed
                await self._answer(event)
                self._answered_upto = stream
                try:
                    await self._store.set_command_position(stream)
                except Exception:
                    logger.exception("Could not record the command position %d", stream)
        finally:
            self._draining = False

    async def _answer(self, event: EventBase) -> None:
        try:
            await self._runner.handle(event)
        except Exception:
            logger.exception("Answering command %s in %s failed", event.event_id, event.room_id)
