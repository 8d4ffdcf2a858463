"""The ghosts the module registered: whom each speaks for, and the profile
it was last given; and the rooms told that ghosts cannot join them."""

from __future__ import annotations

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect.store.schema import StoreBase


@attrs.frozen
class GhostRecord:
    """A ghost, the person and room it speaks for, and its profile as last set."""

    ghost_user_id: str
    user_id: str
    room_id: str
    displayname: str
    avatar_url: str | None


_GHOST_COLUMNS = (
    "SELECT ghost_user_id, user_id, room_id, displayname, avatar_url FROM room_connect_ghosts"
)


def _ghost(row: tuple[object, ...]) -> GhostRecord:
    avatar = row[4]
    return GhostRecord(
        str(row[0]), str(row[1]), str(row[2]), str(row[3]), None if avatar is None else str(avatar)
    )


class GhostsStore(StoreBase):
    async def ghost(self, ghost_user_id: str) -> GhostRecord | None:
        row = await self._first_row(
            "room_connect_ghost", _GHOST_COLUMNS + " WHERE ghost_user_id = ?", (ghost_user_id,)
        )
        return None if row is None else _ghost(row)

    async def ghost_owner(self, ghost_user_id: str) -> tuple[str, str] | None:
        """(person, room) a ghost speaks for; None for anyone not a ghost of this
        server's module."""
        record = await self.ghost(ghost_user_id)
        return None if record is None else (record.user_id, record.room_id)

    async def ghost_of(self, user_id: str, room_id: str) -> GhostRecord | None:
        """The ghost of ``user_id`` as an author in ``room_id``, if registered."""
        row = await self._first_row(
            "room_connect_ghost_of",
            _GHOST_COLUMNS + " WHERE room_id = ? AND user_id = ?",
            (room_id, user_id),
        )
        return None if row is None else _ghost(row)

    async def ghosts_of_room(self, room_id: str) -> list[GhostRecord]:
        """Every ghost speaking for someone of ``room_id``."""

        def txn_fn(txn: LoggingTransaction) -> list[GhostRecord]:
            txn.execute(_GHOST_COLUMNS + " WHERE room_id = ?", (room_id,))
            return [_ghost(tuple(row)) for row in txn.fetchall()]

        return await self._run("room_connect_ghosts_of_room", txn_fn)

    async def record_ghost(self, record: GhostRecord, now_ms: int) -> None:
        """Record a ghost, or its new profile."""

        def txn_fn(txn: LoggingTransaction) -> None:
            txn.execute(
                """
                INSERT INTO room_connect_ghosts
                    (ghost_user_id, user_id, room_id, displayname, avatar_url, created_ts)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (ghost_user_id) DO UPDATE SET
                    displayname = EXCLUDED.displayname, avatar_url = EXCLUDED.avatar_url
                """,
                (
                    record.ghost_user_id,
                    record.user_id,
                    record.room_id,
                    record.displayname,
                    record.avatar_url,
                    now_ms,
                ),
            )

        await self._run("room_connect_record_ghost", txn_fn)

    async def ghost_notice_due(self, room_id: str, now_ms: int) -> bool:
        """Whether ``room_id`` is still to be told that ghosts cannot join it;
        True once, however many processes and restarts ask."""

        def txn_fn(txn: LoggingTransaction) -> bool:
            txn.execute(
                "INSERT INTO room_connect_ghost_notices (room_id, told_ts) VALUES (?, ?)"
                " ON CONFLICT (room_id) DO NOTHING",
                (room_id, now_ms),
            )
            return bool(txn.rowcount)

        return await self._run("room_connect_ghost_notice_due", txn_fn)
