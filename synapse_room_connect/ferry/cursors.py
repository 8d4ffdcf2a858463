"""How far each direction (source room -> target room) is done: the one copy
in memory of the store's cursors, and which directions are settled.

The store's cursor is the durable record; this is what one ferry process
knows of it. It is raised only after a write to the store has committed
(``recorded``), so a pass that fails never leaves memory ahead of the store,
and it is forgotten whenever this process may no longer be the only writer
(``forget``): the next pass reads the store again.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

DirectionKey = tuple[str, str]


@attrs.define
class DirectionCursors:
    # DirectionKey -> the store's cursor: how far the direction was read and
    # recorded.
    _positions: dict[DirectionKey, int] = attrs.field(init=False, factory=dict)
    # Directions whose every send this process made was recorded: nothing of
    # theirs can be in Synapse unrecorded, so no look-up before sending.
    # Empty after a start; a direction leaves it on any failure.
    _settled: set[DirectionKey] = attrs.field(init=False, factory=set)

    def get(self, direction: DirectionKey) -> int | None:
        return self._positions.get(direction)

    def known(self, direction: DirectionKey) -> bool:
        return direction in self._positions

    def load(self, positions: Mapping[DirectionKey, int]) -> None:
        """The store's cursors, as just read."""
        self._positions.update(positions)

    def reads_from(self, direction: DirectionKey, since: int) -> int:
        """Where the direction reads from: its cursor, never before ``since``
        (a connection activated again starts from its new consent: what was
        said while it was revoked stays on its side)."""
        return max(self._positions.get(direction, since), since)

    def recorded(self, direction: DirectionKey, position: int) -> None:
        """The store now holds ``position`` for the direction."""
        self._positions[direction] = max(self._positions.get(direction, position), position)

    def is_settled(self, direction: DirectionKey) -> bool:
        return direction in self._settled

    def settle(self, direction: DirectionKey, settled: bool) -> None:
        if settled:
            self._settled.add(direction)
        else:
            self._settled.discard(direction)

    def forget(self, direction: DirectionKey) -> None:
        """Another process may write this direction now (revoked, carried
        elsewhere, or a pass failed mid-way): read it from the store again and
        look up before sending."""
        self._positions.pop(direction, None)
        self._settled.discard(direction)
