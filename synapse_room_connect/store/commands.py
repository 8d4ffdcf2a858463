"""The command cursor: how far `!connect` commands have been answered, and
the commands after it, so a restart answers what arrived while the acting
process was down, once."""

from __future__ import annotations

from synapse.module_api import LoggingTransaction

from synapse_room_connect.store.records import TimelineRow
from synapse_room_connect.store.schema import StoreBase
from synapse_room_connect.synapse_compat import sql

# What a command's JSON must contain; a cheap filter before the events are
# fetched and parsed (JSON never escapes "!").
_COMMAND_LIKE = "%!connect%"


class CommandCursorStore(StoreBase):
    async def command_position(self) -> int | None:
        row = await self._first_row(
            "room_connect_command_position",
            "SELECT stream_ordering FROM room_connect_command_cursor",
            (),
        )
        return None if row is None else int(row[0])

    async def set_command_position(self, position: int) -> None:
        """Move the cursor to ``position``, never back."""

        def txn_fn(txn: LoggingTransaction) -> None:
            txn.execute("SELECT stream_ordering FROM room_connect_command_cursor")
            row = txn.fetchone()
            if row is None:
                txn.execute(
                    "INSERT INTO room_connect_command_cursor (stream_ordering) VALUES (?)",
                    (position,),
                )
            elif int(row[0]) < position:
                txn.execute(
                    "UPDATE room_connect_command_cursor SET stream_ordering = ?", (position,)
                )

        await self._run("room_connect_set_command_position", txn_fn)

    async def commands_after(
        self, bot_user_id: str, after: int, upto: int, since_ts: int, limit: int
    ) -> list[TimelineRow]:
        """The newest ``limit`` messages that may be commands, in stream
        positions (after, upto], sent at or after ``since_ts``, in rooms the bot
        is joined or invited to, oldest first."""

        rows = await self._run(
            "room_connect_commands_after",
            lambda txn: sql.command_candidates(
                txn, bot_user_id, after, upto, since_ts, _COMMAND_LIKE, limit
            ),
        )
        return [TimelineRow(stream, event_id) for stream, event_id in rows]
