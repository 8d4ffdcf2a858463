"""The fence: what the ferry does with events said after a change to a
connection that it has not been told about yet.

Reconciliation (reconcile.py) runs beside the ferry and tells it of a
revocation only once it has processed it, so a message sent just after a
revocation could be read, and carried, first. Each timeline read therefore
also returns the connection and room-trait changes in both rooms of every
direction (store_events.py). Past the first such change the ferry goes by
the rooms' current state, not by what it loaded:

- the connection is no longer active, or another ferry carries it: nothing
  said after the change crosses, and reconciliation ends the direction;
- it is active on consents given after the ferry's position (revoked and
  given again): what was said in between stays on its side, as when
  reconciliation re-activates a connection;
- otherwise (another connection of the room changed, or a trait that
  changed nothing): carry on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from synapse_room_connect.connections.status import ActivationPosition, StateReader, derive_pair
from synapse_room_connect.core.handshake import Status
from synapse_room_connect.store import TimelineRow


@attrs.frozen
class PastFence:
    """Whether events after a fence may cross, and from where."""

    carry: bool
    # With ``carry``: events up to here stay on their side (said before the
    # consents the connection is active on now).
    resume_after: int = 0


HOLD = PastFence(carry=False)


class FenceGate(Protocol):
    async def past_fence(self, room_id: str, target: str) -> PastFence: ...


@attrs.frozen
class FencedRows:
    """A direction's rows split at its fence."""

    before: list[TimelineRow]
    # None: hold everything from the fence on; else skip to here, then ``after``.
    skip_to: int | None
    after: list[TimelineRow]


def first_fence(
    fences: Mapping[str, Sequence[int]], rooms: Sequence[str], after: int, upto: int
) -> int | None:
    """The first change in any of ``rooms`` in (after, upto], if any."""
    return min(
        (p for room in rooms for p in fences.get(room, ()) if after < p <= upto), default=None
    )


def split(rows: Sequence[TimelineRow], fence: int, past: PastFence, upto: int) -> FencedRows:
    """What of ``rows`` crosses, given the fence and the verdict past it.
    ``upto`` bounds the skip: nothing beyond what was read is passed over."""
    before = [row for row in rows if row.stream < fence]
    if not past.carry:
        return FencedRows(before, None, [])
    skip_to = min(max(fence, past.resume_after), upto)
    return FencedRows(before, skip_to, [row for row in rows if row.stream > skip_to])


@attrs.define
class CurrentStateGate:
    """Decides past a fence from the rooms' current state, which includes the
    change: Synapse updates current state before the stream position moves."""

    _reader: StateReader
    _activation_position: ActivationPosition
    _bot_user_id: str

    async def past_fence(self, room_id: str, target: str) -> PastFence:
        pair = await derive_pair(self._reader, room_id, target)
        verdict = pair.a.verdict
        if verdict.status is not Status.ACTIVE or verdict.ferry != self._bot_user_id:
            return HOLD
        return PastFence(True, await self._activation_position(pair.a.here, pair.b.here))
