"""Which reconciliations run, and how many at once.

A changed room is first read for the rooms it has a connection with (a read
only); each such pair is then reconciled with both its rooms claimed. Pairs
that share no room run at once, up to a bound; two that share one never do,
so one room's bot membership, notices and cache rows change in one order
(the bot never leaves a room another pair is joining it to, and a notice is
decided from a cache row nobody else is swapping). Work for a room that
changes while its pair runs waits, then runs again on the new state.

Everything here runs on the reactor thread: the checks and claims below
have no await between them, so no lock is needed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

import attrs

logger = logging.getLogger(__name__)

# How many pairs are reconciled at once. Each one waits mostly on Synapse
# (state reads, event creation and persistence); a few at once keep the
# process busy without letting one burst of consents (a server starting up,
# a thousand rooms connected by a script) crowd out client requests: every
# reconciliation is at most a few events.
CONCURRENCY: Final = 8


class Host(Protocol):
    def run_as_background_process(
        self, desc: str, func: Callable[[], Awaitable[None]]
    ) -> object: ...


# The rooms ``room_id`` has (or had) a connection with.
Partners = Callable[[str], Awaitable[Sequence[str]]]
ReconcilePair = Callable[[str, str], Awaitable[None]]


@attrs.define
class ReconcileQueue:
    _host: Host
    _partners: Partners
    _reconcile_pair: ReconcilePair
    _limit: int = CONCURRENCY
    # Called each time the last running work finishes with nothing left to do.
    _on_idle: Callable[[], None] = attrs.field(kw_only=True, default=lambda: None)
    # Ordered sets: the oldest change is served first.
    _rooms: dict[str, None] = attrs.field(init=False, factory=dict)
    # Keyed by the unordered pair; the value is the order it was first asked
    # for in (the changed room first).
    _pairs: dict[frozenset[str], tuple[str, str]] = attrs.field(init=False, factory=dict)
    # Rooms a running pair reconciliation holds.
    _claimed: set[str] = attrs.field(init=False, factory=set)
    _workers: int = attrs.field(init=False, default=0)
    # Workers started but not yet running: each takes a job, then starts the
    # next worker if more jobs can run, so a burst of changes starts one.
    _starting: int = attrs.field(init=False, default=0)

    def room_changed(self, room_id: str) -> None:
        self._rooms[room_id] = None
        self._start_worker()

    def _start_worker(self) -> None:
        if self._starting or self._workers >= self._limit or not self._runnable():
            return
        self._workers += 1
        self._starting += 1
        self._host.run_as_background_process("room_connect_reconcile", self._work)

    def _runnable(self) -> bool:
        return bool(self._rooms) or any(not self._claimed.intersection(p) for p in self._pairs)

    async def _work(self) -> None:
        self._starting -= 1
        try:
            while (job := self._take()) is not None:
                self._start_worker()
                await job()
        finally:
            self._workers -= 1
            if not self._workers and not self._rooms and not self._pairs:
                self._on_idle()

    def _take(self) -> Callable[[], Awaitable[None]] | None:
        # Pairs first: finishing what was found beats finding more.
        for key, (a, b) in self._pairs.items():
            if a not in self._claimed and b not in self._claimed:
                del self._pairs[key]
                self._claimed.update(key)
                return functools.partial(self._run_pair, a, b)
        if self._rooms:
            room_id = next(iter(self._rooms))
            del self._rooms[room_id]
            return functools.partial(self._find_pairs, room_id)
        return None

    async def _find_pairs(self, room_id: str) -> None:
        try:
            partners = await self._partners(room_id)
        except Exception:
            logger.exception("Failed to read the connections of %s", room_id)
            return
        for other in partners:
            self._pairs.setdefault(frozenset((room_id, other)), (room_id, other))

    async def _run_pair(self, a: str, b: str) -> None:
        try:
            await self._reconcile_pair(a, b)
        except Exception:
            logger.exception("Failed to reconcile the connection %s <-> %s", a, b)
        finally:
            self._claimed.difference_update((a, b))
