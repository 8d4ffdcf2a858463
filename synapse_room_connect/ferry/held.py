"""Events held back for a relation's counterpart still to come.

An event relating to one whose counterpart another direction is still to
send (``RelationPendingError``) waits, and holds back what follows it in its
direction, until that counterpart exists or ``RELATION_WAIT_MS`` has passed;
then it goes without the relation. When each wait began is remembered here,
per direction, so the batch sender can tell a fresh hold from an overdue one,
and the count is published as a gauge so a stuck relation shows.

Only memory: after a restart, or when a direction comes back to this
process, an event still waiting waits afresh rather than going without its
relation at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from synapse_room_connect import metrics
from synapse_room_connect.ferry.cursors import DirectionKey

# How long an event waits for a relation's counterpart that another direction
# is still to send (RelationPendingError) before it goes without the relation:
# long enough for a restarted ferry worker to catch up.
RELATION_WAIT_MS: Final = 60_000


@attrs.define
class HeldEvents:
    _server_name: str
    _clock_ms: Callable[[], int]
    # Direction -> event -> when it was first held for RelationPendingError.
    _since: dict[DirectionKey, dict[str, int]] = attrs.field(init=False, factory=dict)

    def may_wait(self, direction: DirectionKey, event_id: str) -> bool:
        """Whether the event may (still) wait for its relation's counterpart:
        not held yet, or held for less than ``RELATION_WAIT_MS``."""
        since = self._since.get(direction, {}).get(event_id)
        return since is None or self._clock_ms() - since < RELATION_WAIT_MS

    def hold(self, direction: DirectionKey, event_id: str) -> None:
        """The event is held back; its wait began now unless it already had."""
        held = self._since.setdefault(direction, {})
        if event_id not in held:
            held[event_id] = self._clock_ms()
            self._changed()

    def release(self, direction: DirectionKey, event_id: str) -> bool:
        """Whether the event was held; it is not any more."""
        held = self._since.get(direction)
        if held is None or held.pop(event_id, None) is None:
            return False
        if not held:
            del self._since[direction]
        self._changed()
        return True

    def drop(self, direction: DirectionKey) -> None:
        """Forget the direction's held events."""
        if self._since.pop(direction, None) is not None:
            self._changed()

    def count(self) -> int:
        """Events held back for a relation's counterpart still to come."""
        return sum(len(held) for held in self._since.values())

    def _changed(self) -> None:
        metrics.ferry_held_events.labels(self._server_name).set(self.count())
