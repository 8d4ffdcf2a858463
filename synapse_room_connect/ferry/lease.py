"""Ferry leases: which process may send for a connection right now.

The worker list says which process carries each connection (sharding.py),
but while processes restart one at a time with a new list, one with the old
list and one with the new may both take a connection for their own. Two
processes sending for one connection at once batch the same originals
differently; Synapse keeps one copy of each by transaction ID, and the
other copy's successor in its chain still names the dropped copy as its
predecessor: a hole in the room's graph. So a process sends for a
connection only while it holds the connection's lease, a row in the
database (store_leases.py):

- It takes the lease when it is free, expired or already its own; a new
  owner waits out the old one's lease (``LEASE_MS`` after its last renewal,
  or until it releases it when it shuts down).
- A pass renews the leases of the directions it reads, in one write for all
  of them, once less than ``RENEW_BELOW_MS`` is left (as does a send, for
  its own), so every send starts at least that long before another process
  may take over; a lease no pass needs lapses. A send (build, persist,
  record) taking longer is the case this does not cover, and it is logged.
- The owner is one run of one process (its name and a random token): a
  process restarted after a crash waits out its earlier run's lease too, as
  that run's last persist may still be under way on the event persister.
- The lease's epoch changes with each change of owner. A process that takes
  a lease and finds another epoch than it last held re-reads the
  connection's cursors and looks up transaction IDs before sending: another
  process may have sent for it meanwhile. A lease nobody held before needs
  no re-read; a release that took no leases is stopped before this one
  starts (docs/admin.md, Upgrading).

A lease is one key for both directions of a connection, as the worker list
assigns them together. Two connections into one target room need no common
lease: their pointers' transaction IDs differ, so Synapse drops nothing from
either chain.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, Protocol

import attrs

from synapse_room_connect.core.sharding import instance_name, pair_key
from synapse_room_connect.ferry.cursors import DirectionKey
from synapse_room_connect.store.leases import LeaseRow

logger = logging.getLogger(__name__)

# How long a lease lasts after its last renewal: after a crash, the longest a
# connection waits for its next owner.
LEASE_MS: Final = 15_000
# A send starts only with at least this much of its leases left.
RENEW_BELOW_MS: Final = 10_000
# How often a process asks again for a lease another process holds.
ASK_AGAIN_MS: Final = 1_000
# How long a shutdown waits for a send under way before it releases the
# leases; past it, they are left to expire.
SHUTDOWN_WAIT_S: Final = 5.0


class LeaseLostError(Exception):
    """A send's lease is gone, or another process held it in between: what
    the pass built may be stale, so its rooms are read again."""


class LeaseStore(Protocol):
    async def claim_leases(
        self, owner: str, keys: Collection[str], lease_ms: int
    ) -> list[LeaseRow]: ...

    async def release_leases(self, owner: str, keys: Collection[str]) -> None: ...


@attrs.frozen
class Admission:
    """What a pass may send for."""

    # Directions whose lease this process holds.
    held: frozenset[DirectionKey]
    # Of those, the ones another process may have sent for since this one
    # last held them: their cursors are to be read again.
    regained: frozenset[DirectionKey]
    # Directions whose lease another process holds.
    waiting: frozenset[DirectionKey]


class LeaseGate(Protocol):
    """What the scheduler and the batch sender ask before sending."""

    async def admit(self, directions: Collection[DirectionKey]) -> Admission: ...

    def sending(self, directions: Collection[DirectionKey]) -> AbstractAsyncContextManager[None]:
        """Around one send: raises ``LeaseLostError`` before it unless every
        direction's lease is held with ``RENEW_BELOW_MS`` to go."""
        ...


class NoLeases:
    """Every direction held, always: for the ferry's parts run on their own."""

    async def admit(self, directions: Collection[DirectionKey]) -> Admission:
        return Admission(frozenset(directions), frozenset(), frozenset())

    @asynccontextmanager
    async def sending(self, directions: Collection[DirectionKey]) -> AsyncIterator[None]:
        yield


def lease_owner(worker_name: str | None) -> str:
    """This run of this process: its name in the list, and a token of its own."""
    return f"{instance_name(worker_name)} {secrets.token_hex(6)}"


def lease_key(direction: DirectionKey) -> str:
    return pair_key(*direction)


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


@attrs.frozen
class _Held:
    epoch: int
    # In this process's monotonic clock, taken before the claim was asked
    # for: never later than the database's expiry.
    until_ms: int


@attrs.define
class FerryLeases:
    _store: LeaseStore
    owner: str
    _clock_ms: Callable[[], int] = attrs.field(kw_only=True, default=monotonic_ms)
    _sleep: Callable[[float], Awaitable[None]] = attrs.field(kw_only=True)
    _held: dict[str, _Held] = attrs.field(init=False, factory=dict)
    # Key -> the epoch this run last held it at; kept when the lease lapses,
    # so taking back a lease nobody took meanwhile costs no re-read.
    _epochs: dict[str, int] = attrs.field(init=False, factory=dict)
    # Key held by another process -> when to ask again; and which owner, to
    # log a wait once rather than every second.
    _ask_after: dict[str, int] = attrs.field(init=False, factory=dict)
    _waiting_on: dict[str, str] = attrs.field(init=False, factory=dict)
    _closing: bool = attrs.field(init=False, default=False)
    _in_flight: int = attrs.field(init=False, default=0)

    async def admit(self, directions: Collection[DirectionKey]) -> Admission:
        keys = {d: lease_key(d) for d in directions}
        now = self._clock_ms()
        ask = {
            k
            for k in keys.values()
            if self._needs_claim(k, now) and self._ask_after.get(k, now) <= now
        }
        changed = await self._claim(ask) if ask and not self._closing else set()
        now = self._clock_ms()
        held = frozenset(d for d, k in keys.items() if self._valid(k, now))
        return Admission(
            held,
            frozenset(d for d in held if keys[d] in changed),
            frozenset(keys.keys() - held),
        )

    @asynccontextmanager
    async def sending(self, directions: Collection[DirectionKey]) -> AsyncIterator[None]:
        keys = {lease_key(d) for d in directions}
        if self._closing:
            raise LeaseLostError("shutting down")
        now = self._clock_ms()
        due = {k for k in keys if self._needs_claim(k, now)}
        if due:
            # Only these: a lease this process no longer uses lapses, so the
            # next owner need not wait for this process to stop.
            changed = await self._claim(due)
            if changed:
                for key in changed:
                    # So the next admission takes it again and reports it regained.
                    del self._epochs[key]
                    del self._held[key]
                raise LeaseLostError(
                    f"another process held the lease on {len(changed)} connection(s) meanwhile"
                )
        now = self._clock_ms()
        lost = [k for k in keys if not self._valid(k, now)]
        if lost:
            raise LeaseLostError(f"the lease on {len(lost)} connection(s) is held elsewhere")
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            now = self._clock_ms()
            late = now - min((self._held[k].until_ms for k in keys if k in self._held), default=now)
            if late > 0:
                logger.warning(
                    "A ferry send ended %d ms after its lease did: another process may have"
                    " sent for the same connection meanwhile",
                    late,
                )

    async def close(self) -> None:
        """Stop sending and let the next owners take over now: on shutdown."""
        self._closing = True
        waited = 0.0
        while self._in_flight and waited < SHUTDOWN_WAIT_S:
            await self._sleep(0.1)
            waited += 0.1
        if self._in_flight:
            logger.warning("A ferry send is still under way: its leases are left to expire")
            return
        now = self._clock_ms()
        keys = [k for k, held in self._held.items() if held.until_ms > now]
        self._held.clear()
        if keys:
            await self._store.release_leases(self.owner, keys)
            logger.info("Released the ferry's lease on %d connection(s)", len(keys))

    def _needs_claim(self, key: str, now: int) -> bool:
        held = self._held.get(key)
        return held is None or held.until_ms - now < RENEW_BELOW_MS

    def _valid(self, key: str, now: int) -> bool:
        held = self._held.get(key)
        return not self._closing and held is not None and held.until_ms - now >= RENEW_BELOW_MS

    async def _claim(self, keys: Collection[str]) -> set[str]:
        """Take or renew ``keys``; those now held at another epoch than this
        run last held them at."""
        started = self._clock_ms()
        rows = {row.key: row for row in await self._store.claim_leases(self.owner, keys, LEASE_MS)}
        changed = set()
        taken: list[str] = []
        # Owner -> the keys newly found held by it, and the longest wait.
        waits: dict[str, tuple[list[str], int]] = {}
        for key in keys:
            row = rows.get(key)
            if row is not None and row.owner == self.owner:
                # Epoch 1 at the first claim: this run created the row, so no
                # process has ever sent for the connection under a lease.
                first = key not in self._epochs and row.epoch == 1
                if self._epochs.get(key) != row.epoch and not first:
                    changed.add(key)
                self._epochs[key] = row.epoch
                self._held[key] = _Held(row.epoch, started + LEASE_MS)
                self._ask_after.pop(key, None)
                if self._waiting_on.pop(key, None) is not None:
                    taken.append(key)
                continue
            self._held.pop(key, None)
            self._ask_after[key] = started + ASK_AGAIN_MS
            if row is not None and self._waiting_on.get(key) != row.owner:
                self._waiting_on[key] = row.owner
                found, longest = waits.get(row.owner, ([], 0))
                waits[row.owner] = ([*found, key], max(longest, row.remaining_ms))
        # One line per owner and claim, not per connection: a restart moves
        # many connections at once.
        for owner, (found, longest) in waits.items():
            logger.info(
                "Waiting for %s to let go of %d connection(s), such as %s (lease ends in %d ms)",
                owner,
                len(found),
                _label(found[0]),
                max(longest, 0),
            )
        if taken:
            logger.info(
                "Took over the ferry's lease on %d connection(s), such as %s",
                len(taken),
                _label(taken[0]),
            )
        return changed


def _label(key: str) -> str:
    return key.replace("\n", " <-> ")
