"""Which ferry process may send for which connection: a lease row per
connection, claimed and renewed in one write for many (ferry_lease.py).

Expiry is in the database's own clock, so processes on different hosts
agree on it whatever their clocks say; each process keeps its own deadline
in its own monotonic clock, started before it asked (ferry_lease.py).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import attrs
from synapse.module_api import LoggingTransaction

from synapse_room_connect import synapse_compat
from synapse_room_connect.store.schema import StoreBase

# Keys per statement: well under SQLite's 999 bound parameters.
_KEYS_PER_QUERY: Final = 400


@attrs.frozen
class LeaseRow:
    """A lease as the database holds it after a claim."""

    key: str
    owner: str
    # Bumped whenever the lease passes to another owner: an owner that finds
    # the epoch it last held knows nobody else held the lease in between.
    epoch: int
    # Until expiry, in the database's clock; 0 or less: expired or released.
    remaining_ms: int


def _now_ms_txn(txn: LoggingTransaction) -> int:
    if synapse_compat.is_postgres(txn):
        # clock_timestamp(), not now(): the time of this statement, not of
        # the transaction's start.
        txn.execute("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)")
    else:
        txn.execute("SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)")
    row = txn.fetchone()
    assert row is not None
    return int(row[0])


def _chunks(keys: Collection[str]) -> list[list[str]]:
    ordered = sorted(set(keys))
    return [ordered[n : n + _KEYS_PER_QUERY] for n in range(0, len(ordered), _KEYS_PER_QUERY)]


class FerryLeaseStore(StoreBase):
    async def claim_leases(
        self, owner: str, keys: Collection[str], lease_ms: int
    ) -> list[LeaseRow]:
        """Take or renew the lease on each key for ``lease_ms`` from now
        where it is free, expired or already ``owner``'s, in one
        transaction; every key's row as it stands afterwards."""

        def txn_fn(txn: LoggingTransaction) -> list[LeaseRow]:
            now = _now_ms_txn(txn)
            # One statement per key in one batch: a key held by another
            # owner is left as it is (the WHERE of DO UPDATE).
            txn.execute_batch(
                """
                INSERT INTO room_connect_ferry_leases (lease_key, owner, epoch, expires_ms)
                VALUES (?, ?, 1, ?)
                ON CONFLICT (lease_key) DO UPDATE SET
                    epoch = CASE WHEN room_connect_ferry_leases.owner = EXCLUDED.owner
                        THEN room_connect_ferry_leases.epoch
                        ELSE room_connect_ferry_leases.epoch + 1 END,
                    owner = EXCLUDED.owner,
                    expires_ms = EXCLUDED.expires_ms
                WHERE room_connect_ferry_leases.owner = EXCLUDED.owner
                    OR room_connect_ferry_leases.expires_ms <= ?
                """,
                [(key, owner, now + lease_ms, now) for key in sorted(set(keys))],
            )
            rows: list[LeaseRow] = []
            for chunk in _chunks(keys):
                txn.execute(
                    "SELECT lease_key, owner, epoch, expires_ms FROM room_connect_ferry_leases"
                    f" WHERE lease_key IN ({', '.join('?' for _ in chunk)})",
                    chunk,
                )
                rows.extend(
                    LeaseRow(str(r[0]), str(r[1]), int(r[2]), int(r[3]) - now)
                    for r in txn.fetchall()
                )
            return rows

        if not keys:
            return []
        return await self._run("room_connect_claim_leases", txn_fn)

    async def release_leases(self, owner: str, keys: Collection[str]) -> None:
        """Let the next owner take these keys now rather than at expiry.
        The owner stays recorded, so taking a key back costs no epoch."""

        def txn_fn(txn: LoggingTransaction) -> None:
            for chunk in _chunks(keys):
                txn.execute(
                    "UPDATE room_connect_ferry_leases SET expires_ms = 0"
                    f" WHERE owner = ? AND lease_key IN ({', '.join('?' for _ in chunk)})",
                    [owner, *chunk],
                )

        if keys:
            await self._run("room_connect_release_leases", txn_fn)
