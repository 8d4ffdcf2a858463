"""The connection cache: each direction's status as last derived from room
state, and when an active connection began (what the ferry reads from)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect.core.ghosts import Senders
from synapse_room_connect.core.handshake import Mode, Status
from synapse_room_connect.store.schema import StoreBase


@attrs.frozen
class CachedConnection:
    room_id: str
    other_room_id: str
    status: Status
    ferry: str | None
    via: tuple[str, ...]


@attrs.frozen
class ActiveTarget:
    """A room that an active connection ferries a source room's events into."""

    room_id: str
    # Stream position of the later consent: events before it stay put.
    since: int
    # Who the target room's consent wants to send into it; None: the default.
    senders: Senders | None = None


@attrs.frozen
class Previous:
    """A direction's cached row before an update; all None when it is new."""

    status: Status | None = None
    ferry: str | None = None
    mode: Mode | None = None
    senders: Senders | None = None


_CACHED_COLUMNS = "SELECT room_id, other_room_id, status, ferry, via FROM room_connect_connections"


def _cached(row: Sequence[Any]) -> CachedConnection:
    return CachedConnection(row[0], row[1], Status(row[2]), row[3], tuple(json.loads(row[4])))


class ConnectionCacheStore(StoreBase):
    async def swap_connection(
        self,
        room_id: str,
        other_room_id: str,
        status: Status,
        ferry: str | None,
        via: Sequence[str],
        mode: Mode,
        now_ms: int,
        senders: Senders | None = None,
    ) -> Previous:
        """Record the derived status of one direction; return what it was.
        ``senders``: what the consent of ``other_room_id`` (the room this
        direction carries into) asks for."""

        def txn_fn(txn: LoggingTransaction) -> Previous:
            txn.execute(
                "SELECT status, ferry, mode, senders FROM room_connect_connections"
                " WHERE room_id = ? AND other_room_id = ?",
                (room_id, other_room_id),
            )
            row = txn.fetchone()
            txn.execute(
                """
                INSERT INTO room_connect_connections
                    (room_id, other_room_id, status, ferry, via, mode, updated_ts, senders)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (room_id, other_room_id) DO UPDATE SET
                    status = EXCLUDED.status, ferry = EXCLUDED.ferry, via = EXCLUDED.via,
                    mode = EXCLUDED.mode, updated_ts = EXCLUDED.updated_ts,
                    senders = EXCLUDED.senders
                """,
                (
                    room_id,
                    other_room_id,
                    status.value,
                    ferry,
                    json.dumps(list(via)),
                    mode.value,
                    now_ms,
                    None if senders is None else senders.value,
                ),
            )
            if row is None:
                return Previous()
            # Rows written before the mode column existed have none.
            return Previous(
                Status(row[0]),
                row[1],
                None if row[2] is None else Mode(row[2]),
                None if row[3] is None else Senders(row[3]),
            )

        return await self._run("room_connect_swap_connection", txn_fn)

    async def cached_connection(self, room_id: str, other_room_id: str) -> CachedConnection | None:
        def txn_fn(txn: LoggingTransaction) -> CachedConnection | None:
            txn.execute(
                _CACHED_COLUMNS + " WHERE room_id = ? AND other_room_id = ?",
                (room_id, other_room_id),
            )
            row = txn.fetchone()
            return None if row is None else _cached(row)

        return await self._run("room_connect_cached_connection", txn_fn)

    async def cached_connections(self, room_id: str | None = None) -> list[CachedConnection]:
        """Cached rows for ``room_id``, or every row when it is None."""

        def txn_fn(txn: LoggingTransaction) -> list[CachedConnection]:
            if room_id is None:
                txn.execute(_CACHED_COLUMNS)
            else:
                txn.execute(_CACHED_COLUMNS + " WHERE room_id = ?", (room_id,))
            return [_cached(row) for row in txn.fetchall()]

        return await self._run("room_connect_cached_connections", txn_fn)

    async def set_active_since(self, room_id: str, other_room_id: str, stream: int) -> None:
        def txn_fn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE room_connect_connections SET active_since = ?"
                " WHERE room_id = ? AND other_room_id = ?",
                (stream, room_id, other_room_id),
            )

        await self._run("room_connect_set_active_since", txn_fn)

    async def active_targets(self, ferry: str) -> dict[str, list[ActiveTarget]]:
        """For each source room, the rooms it ferries to and since when."""

        def txn_fn(txn: LoggingTransaction) -> dict[str, list[ActiveTarget]]:
            txn.execute(
                "SELECT room_id, other_room_id, active_since, senders"
                " FROM room_connect_connections"
                " WHERE status = ? AND ferry = ? AND active_since IS NOT NULL",
                (Status.ACTIVE.value, ferry),
            )
            targets: dict[str, list[ActiveTarget]] = {}
            for room_id, other, since, senders in txn.fetchall():
                chosen = None if senders is None else Senders(senders)
                targets.setdefault(room_id, []).append(ActiveTarget(other, int(since), chosen))
            return targets

        return await self._run("room_connect_active_targets", txn_fn)
