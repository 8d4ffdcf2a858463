"""The ferry's database work does not grow with the number of connections,
counted on a real Synapse: per pointer in a burst across rooms, and per
connection that becomes active.

Counts, not times: Synapse's ``synapse_storage_transaction_time_count`` for
the module's ``room_connect_*`` descs, and the rows the module's feed and
ferry reads returned (``synapse_room_connect_rows_read_total``), as deltas
around each phase once the module has settled.

The sizes are N = 10 against N = ``ROOM_CONNECT_SCALE_PAIRS`` (60 by
default): creating a pair of rooms and connecting them costs Synapse 2.5-5 s
on this busy two-core machine (this test took 7 minutes at N = 60 with a load
average of 16), so N = 200 would spend 15-25 minutes in set-up alone;
``bench/scale.py`` counts the same per burst at 200 or 1000 pairs. Measured
here, identical at N = 10 and N = 60 (at N = 10 and N = 20 since the ferry
takes leases): 10 connections set up cost the ferry 1 read of the
directions, 1 read of cursors and 1 lease claim each, and 29 timeline reads
in all; a burst over 10 rooms cost 3 passes of 4 transactions
each (the leases, lapsed since set-up; timelines; read-back of the stored IDs;
record), 10 timeline rows read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import attrs
import pytest

from bench import scale_rooms
from bench.ferry import ServerCost, scrape_metrics, settled_cost
from bench.scale_rooms import Owners, RoomPair, SyncReader
from harness.synapse import Homeserver

SMALL: Final = 10
LARGE: Final = max(int(os.environ.get("ROOM_CONNECT_SCALE_PAIRS", "60")), 2 * SMALL)
BURST: Final = 10
THREADS: Final = 4
WAIT_S: Final = 300.0
ROWS_METRIC: Final = "synapse_room_connect_rows_read_total"
# The ferry's own reads and writes (not the feed's, which follows traffic,
# nor the expansion's, which follows what clients read).
FERRY_DESCS: Final = frozenset(
    {
        "room_connect_active_targets",
        "room_connect_cursors",
        "room_connect_timelines_after",
        "room_connect_sent_transactions",
        "room_connect_record_ferried",
    }
)
# Per pointer in a burst across rooms, everything the module did: the feed's
# reads (the originals' and the pointers' notifications), the ferry's read,
# its read-back of what Synapse stored and its record, and the expansion of
# each pointer for the /sync reader. Measured 2-5 here (4.7 with the lease
# claims, one per pass, at N = 20), plus one write when the pointer's author
# is new to the room it goes into (their ghost's record; the burst's authors
# all are).
MAX_TXNS_PER_POINTER: Final = 6.0
# A cost that grew with N would be LARGE / SMALL times higher; the margin
# absorbs how wake-ups happen to coalesce, which depends on timing.
GROWTH_MARGIN: Final = 1.5


@attrs.frozen
class Phase:
    txns: dict[str, float]
    rows: dict[str, float]

    def ferry_txns(self) -> float:
        return sum(n for desc, n in self.txns.items() if desc in FERRY_DESCS)


def rows_read(hs: Homeserver) -> dict[str, float]:
    return {
        labels.get("desc", ""): value
        for name, labels, value in scrape_metrics(hs.metrics_url)
        if name == ROWS_METRIC
    }


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


class Counted:
    """The module's counts over a phase, from when it settled before to after."""

    def __init__(self, hs: Homeserver) -> None:
        self._hs = hs
        self._cost: ServerCost = settled_cost(hs)
        self._rows = rows_read(hs)

    def done(self) -> Phase:
        cost = settled_cost(self._hs).minus(self._cost)
        txns = {desc: n for desc, n in cost.module_txn_count.items() if n}
        return Phase(txns, delta(self._rows, rows_read(self._hs)))


@attrs.define
class Scale:
    hs: Homeserver
    owners: Owners
    pointers: SyncReader
    notices: SyncReader
    pairs: list[RoomPair] = attrs.field(factory=list)

    def add_pairs(self, count: int) -> list[RoomPair]:
        start = len(self.pairs)
        new = scale_rooms.create_pairs(self.owners, range(start, start + count), THREADS)
        missing = self.notices.wait_for([p.room_b for p in new], WAIT_S)
        assert not missing, f"no 'now connected' notice in {len(missing)} rooms"
        self.pairs.extend(new)
        return new

    def burst(self, pairs: Sequence[RoomPair], label: str) -> list[str]:
        """One message in each pair's room A, sent in parallel; their IDs once
        each has exactly one pointer, in its pair's room B."""

        def send(pair: RoomPair) -> str:
            return self.owners.alice.send_message(pair.room_a, f"{label} {pair.index}")

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            sent = list(pool.map(send, pairs))
        missing = self.pointers.wait_for(sent, WAIT_S)
        assert not missing, f"{label}: {len(missing)} of {len(sent)} pointers missing"
        for pair, event_id in zip(pairs, sent, strict=True):
            rooms = [room for _, room in self.pointers.sightings(event_id)]
            assert rooms == [pair.room_b], (label, event_id, rooms)
        return sent


@pytest.fixture(scope="module")
def scale(harness_dir: Path) -> Iterator[Scale]:
    hs = Homeserver(harness_dir, name="hs-scale")
    try:
        hs.start()
        owners = Owners.register(hs)
        # Pointers come from the authors' ghosts.
        pointers = SyncReader(
            hs.client_url, owners.bob, owners.bot, scale_rooms.pointer_key, any_sender=True
        )
        notices = SyncReader(
            hs.client_url,
            owners.bob,
            owners.bot,
            scale_rooms.connected_notice_key,
            key_per_room=True,
        )
        for reader in (pointers, notices):
            reader.prime()
            reader.start()
        try:
            yield Scale(hs, owners, pointers, notices)
        finally:
            pointers.stop()
            notices.stop()
    finally:
        hs.destroy()


# Bounds a hang, not a speed: set-up of LARGE pairs dominates.
@pytest.mark.timeout(1800)
def test_the_ferry_s_work_per_pointer_and_per_connection_does_not_grow_with_n(
    scale: Scale,
) -> None:
    counted = Counted(scale.hs)
    scale.add_pairs(SMALL)
    setup_small = counted.done()

    counted = Counted(scale.hs)
    scale.burst(scale.pairs[:BURST], "small")
    burst_small = counted.done()

    scale.add_pairs(LARGE - 2 * SMALL)
    counted = Counted(scale.hs)
    last = scale.add_pairs(SMALL)
    setup_large = counted.done()
    assert len(scale.pairs) == LARGE

    counted = Counted(scale.hs)
    scale.burst(last[:BURST], "large")
    burst_large = counted.done()

    report = (
        f"set-up of {SMALL} connections at N={SMALL}: {setup_small}\n"
        f"set-up of {SMALL} connections at N={LARGE}: {setup_large}\n"
        f"burst over {BURST} rooms at N={SMALL}: {burst_small}\n"
        f"burst over {BURST} rooms at N={LARGE}: {burst_large}"
    )
    print(report)
    # A connection that becomes active costs the ferry a reload of the
    # directions and a read of its own room, not a read of every room.
    small, large = setup_small.ferry_txns() / SMALL, setup_large.ferry_txns() / SMALL
    assert 0 < large <= max(small * GROWTH_MARGIN, small + 1), report

    small, large = (sum(p.txns.values()) / BURST for p in (burst_small, burst_large))
    assert 0 < small <= MAX_TXNS_PER_POINTER, report
    assert large <= min(max(small * GROWTH_MARGIN, small + 1), MAX_TXNS_PER_POINTER), report
    for desc in ("room_connect_timelines_after", "room_connect_record_ferried"):
        assert burst_large.txns.get(desc, 0) <= BURST, report  # at most one per pointer

    small, large = (sum(p.rows.values()) / BURST for p in (burst_small, burst_large))
    assert small > 0, report
    assert large <= max(small * GROWTH_MARGIN, small + 2), report
    # The ferry reads each original once, whatever the number of connections.
    assert burst_large.rows.get("room_connect_timelines_after", 0) <= BURST, report
