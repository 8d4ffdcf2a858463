"""SQL on Synapse's own tables, which no module API reads: the durable record
of what was persisted, so nothing depends on a notification having arrived.

Each query was checked against the schema of 1.150.0 and 1.163.2 on SQLite
and PostgreSQL. ``require_synapse_tables`` runs at start-up and names the
Synapse version whose tables lack a column these queries read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from synapse.module_api import LoggingTransaction

from synapse_room_connect.synapse_compat.support import unsupported

# Rooms per read: well under SQLite's 999 bound parameters, 2 each.
MAX_ROOMS_PER_READ: Final = 400

# Every table and column the queries below read.
_COLUMNS: Final[Mapping[str, str]] = {
    "events": "event_id, room_id, type, sender, state_key, stream_ordering, outlier,"
    " origin_server_ts",
    "rejections": "event_id",
    "room_memberships": "event_id, membership",
    "event_json": "event_id, json",
    "local_current_membership": "room_id, user_id, membership",
    "event_txn_id_device_id": "room_id, txn_id, event_id, user_id, device_id",
    "event_relations": "event_id, relates_to_id, relation_type, aggregation_key",
    "redactions": "redacts",
}


# Rows as Synapse's tables give them; the store turns them into its records
# (store/records.py), so nothing above the store depends on this layer's types.
# (room ID, stream position, event ID)
RoomEventRow = tuple[str, int, str]
# (stream position, event ID, room ID, type, sender, state key, membership)
NewEventRow = tuple[int, str, str, str, str, "str | None", "str | None"]
# (stream position, event ID)
StreamEventRow = tuple[int, str]
# (source room, target room, pointers, newest pointer's origin_server_ts)
PointerTallyRow = tuple[str, str, int, "int | None"]


def require_synapse_tables(txn: LoggingTransaction) -> None:
    """Raise, naming the Synapse version, if a table or column read below is
    missing. Checked against 1.150.0 and 1.163.2 (both pass)."""
    for table, columns in _COLUMNS.items():
        # The first failure ends the check: on PostgreSQL it aborts the
        # transaction, so later statements would fail whatever their table.
        try:
            txn.execute(f"SELECT {columns} FROM {table} LIMIT 0")
        except Exception as e:
            raise unsupported(f"the database columns {table} ({columns}): {e}") from e


def _events_after(
    txn: LoggingTransaction,
    positions: Sequence[tuple[str, int]],
    where: str,
    args: Sequence[object],
    tail: str = "",
) -> list[RoomEventRow]:
    """Timeline events of each room after its own position that match
    ``where``; outliers and rejected events left out. Each room's position
    is in the join, so no row before it is read, however far behind another
    room is."""
    values = ", ".join("(?, ?)" for _ in positions)
    txn.execute(
        f"""
        WITH positions AS (SELECT * FROM (VALUES {values}) AS p)
        SELECT e.room_id, e.stream_ordering, e.event_id
        FROM positions AS p
        JOIN events AS e ON e.room_id = p.column1 AND e.stream_ordering > p.column2
        LEFT JOIN rejections AS r ON r.event_id = e.event_id
        WHERE NOT e.outlier AND r.event_id IS NULL AND {where}
        {tail}
        """,
        (*(arg for position in positions for arg in position), *args),
    )
    return [(str(row[0]), int(row[1]), str(row[2])) for row in txn.fetchall()]


def timelines_after(
    txn: LoggingTransaction,
    after: Mapping[str, int],
    upto: int,
    limit: int,
    exclude_sender: str,
    exclude_like: str | None = None,
) -> list[RoomEventRow]:
    """Timeline events of each room in ``after`` in stream positions
    (after[room], upto], oldest first, at most ``limit``; outliers, rejected
    events, ``exclude_sender``'s and those of senders matching the LIKE
    pattern ``exclude_like`` (escape character ``!``) left out. At most
    MAX_ROOMS_PER_READ rooms. Checked against 1.150.0 and 1.163.2."""
    where, args = "e.stream_ordering <= ? AND e.sender != ?", [upto, exclude_sender]
    if exclude_like is not None:
        where += " AND e.sender NOT LIKE ? ESCAPE '!'"
        args.append(exclude_like)
    return _events_after(
        txn,
        sorted(after.items()),
        where,
        (*args, limit),
        "ORDER BY e.stream_ordering LIMIT ?",
    )


def members_like(txn: LoggingTransaction, room_id: str, user_like: str) -> list[str]:
    """Local users joined to ``room_id`` whose ID matches the LIKE pattern
    ``user_like`` (escape character ``!``). Checked against 1.150.0 and 1.163.2."""
    txn.execute(
        "SELECT user_id FROM local_current_membership"
        " WHERE room_id = ? AND membership = 'join' AND user_id LIKE ? ESCAPE '!'",
        (room_id, user_like),
    )
    return [str(row[0]) for row in txn.fetchall()]


def state_changes_in(
    txn: LoggingTransaction, after: Mapping[str, int], types: Collection[str], upto: int
) -> list[RoomEventRow]:
    """State events of ``types`` in each room of ``after`` in stream positions
    (after[room], upto], oldest first; outliers and rejected events left out.
    Checked against 1.150.0 and 1.163.2."""
    found: list[RoomEventRow] = []
    ordered, kinds = sorted(after.items()), sorted(types)
    where = (
        f"e.type IN ({', '.join('?' for _ in kinds)}) AND e.state_key IS NOT NULL"
        " AND e.stream_ordering <= ?"
    )
    for n in range(0, len(ordered), MAX_ROOMS_PER_READ):
        found.extend(_events_after(txn, ordered[n : n + MAX_ROOMS_PER_READ], where, (*kinds, upto)))
    return sorted(found, key=lambda each: each[1])


def has_synapse_schema(cur: Any) -> bool:
    """Whether a PostgreSQL database (a DB-API cursor on it) already holds
    Synapse's tables, as ``synapse_port_db`` leaves it. Checked against
    1.150.0 and 1.163.2."""
    cur.execute("SELECT to_regclass('events') IS NOT NULL")
    row = cur.fetchone()
    return bool(row and row[0])


def new_events(txn: LoggingTransaction, after: int, upto: int, limit: int) -> list[NewEventRow]:
    """Every room's timeline events in stream positions (after, upto], in
    order, with a member event's membership. Checked against 1.150.0 and 1.163.2."""
    txn.execute(
        """
        SELECT e.stream_ordering, e.event_id, e.room_id, e.type, e.sender,
            e.state_key, m.membership
        FROM events AS e
        LEFT JOIN rejections AS r ON r.event_id = e.event_id
        LEFT JOIN room_memberships AS m ON m.event_id = e.event_id
        WHERE e.stream_ordering > ? AND e.stream_ordering <= ?
            AND NOT e.outlier AND r.event_id IS NULL
        ORDER BY e.stream_ordering
        LIMIT ?
        """,
        (after, upto, limit),
    )
    return [
        (int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), r[5], r[6]) for r in txn.fetchall()
    ]


# Triples per read: well under SQLite's 999 bound parameters, 3 each.
_TRIPLES_PER_READ: Final = 300


def sent_transactions(
    txn: LoggingTransaction, device_id: str, wanted: Collection[tuple[str, str, str]]
) -> dict[tuple[str, str], str]:
    """(room, transaction ID) -> event ID of those already sent, for each
    (room, transaction ID, sender) in ``wanted``, by the sender's device
    ``device_id``, from Synapse's own record (kept for a day). Checked
    against 1.150.0 and 1.163.2."""
    ordered = sorted(set(wanted))
    found: dict[tuple[str, str], str] = {}
    for n in range(0, len(ordered), _TRIPLES_PER_READ):
        chunk = ordered[n : n + _TRIPLES_PER_READ]
        values = ", ".join("(?, ?, ?)" for _ in chunk)
        # One index probe per triple, on Synapse's unique
        # (user_id, device_id, room_id, txn_id).
        txn.execute(
            f"""
            WITH wanted AS (SELECT * FROM (VALUES {values}) AS w)
            SELECT t.room_id, t.txn_id, t.event_id
            FROM wanted AS w
            JOIN event_txn_id_device_id AS t
                ON t.room_id = w.column1 AND t.txn_id = w.column2 AND t.user_id = w.column3
            WHERE t.device_id = ?
            """,
            (*(arg for triple in chunk for arg in triple), device_id),
        )
        found.update(((str(r[0]), str(r[1])), str(r[2])) for r in txn.fetchall())
    return found


def command_candidates(
    txn: LoggingTransaction,
    bot_user_id: str,
    after: int,
    upto: int,
    since_ts: int,
    body_like: str,
    limit: int,
) -> list[StreamEventRow]:
    """The newest ``limit`` messages whose JSON is LIKE ``body_like``, in
    stream positions (after, upto], sent at or after ``since_ts`` by anyone but
    the bot, in rooms the bot is joined or invited to; oldest first.
    Checked against 1.150.0 and 1.163.2."""
    txn.execute(
        """
        SELECT e.stream_ordering, e.event_id FROM events AS e
        JOIN event_json AS j ON j.event_id = e.event_id
        LEFT JOIN rejections AS r ON r.event_id = e.event_id
        WHERE e.stream_ordering > ? AND e.stream_ordering <= ?
            AND e.type = 'm.room.message' AND e.sender != ?
            AND e.origin_server_ts >= ?
            AND NOT e.outlier AND r.event_id IS NULL
            AND e.room_id IN (
                SELECT room_id FROM local_current_membership
                WHERE user_id = ? AND membership IN ('join', 'invite')
            )
            AND j.json LIKE ?
        ORDER BY e.stream_ordering DESC
        LIMIT ?
        """,
        (after, upto, bot_user_id, since_ts, bot_user_id, body_like, limit),
    )
    rows = [(int(row[0]), str(row[1])) for row in txn.fetchall()]
    return rows[::-1]


def pointer_tallies(txn: LoggingTransaction, room_ids: Collection[str]) -> list[PointerTallyRow]:
    """Pointers recorded into ``room_ids`` per source and target room, with the
    newest pointer event's time. Checked against 1.150.0 and 1.163.2."""
    marks = ", ".join("?" for _ in room_ids)
    # The module's pointer table keeps no time; the pointer events themselves do.
    txn.execute(
        "SELECT p.source_room_id, p.target_room_id, COUNT(*), MAX(e.origin_server_ts)"
        " FROM room_connect_pointers AS p"
        " LEFT JOIN events AS e ON e.event_id = p.pointer_event_id"
        f" WHERE p.target_room_id IN ({marks})"
        " GROUP BY p.source_room_id, p.target_room_id",
        tuple(room_ids),
    )
    return [
        (str(r[0]), str(r[1]), int(r[2]), None if r[3] is None else int(r[3]))
        for r in txn.fetchall()
    ]


def live_annotations(
    txn: LoggingTransaction,
    event_id: str,
    key: str,
    *,
    sender: str | None = None,
    exclude_sender: str | None = None,
    limit: int = 100,
) -> list[tuple[str, str]]:
    """(reaction event ID, sender) of live reactions to ``event_id`` with
    ``key``, by ``sender`` only or by anyone but ``exclude_sender``. Synapse
    deletes a reaction's relation row when it persists its redaction; the
    redactions table also covers one whose row a redaction raced.
    Checked against 1.150.0 and 1.163.2."""
    where, args = "", [event_id, key]
    if sender is not None:
        where, args = " AND e.sender = ?", [*args, sender]
    if exclude_sender is not None:
        where, args = f"{where} AND e.sender != ?", [*args, exclude_sender]
    txn.execute(
        f"""
        SELECT e.event_id, e.sender FROM event_relations AS rel
        JOIN events AS e ON e.event_id = rel.event_id
        LEFT JOIN rejections AS r ON r.event_id = e.event_id
        WHERE rel.relates_to_id = ? AND rel.relation_type = 'm.annotation'
            AND rel.aggregation_key = ? AND e.type = 'm.reaction'
            AND r.event_id IS NULL
            AND NOT EXISTS (SELECT 1 FROM redactions AS rd WHERE rd.redacts = e.event_id)
            {where}
        ORDER BY e.stream_ordering
        LIMIT ?
        """,
        (*args, limit),
    )
    return [(str(row[0]), str(row[1])) for row in txn.fetchall()]
