"""The scale benchmark runs end to end in its CI size, and its counts hold.

Only counts are checked, never the timings or ratios the benchmark prints:
every burst message got exactly one pointer, in the room its source room is
connected to, and the module's database transactions per pointer do not grow
from a burst over 2 connections to one over 20; in (7), each new author's
first message got its counterpart and its author one account and one ghost
record, where as many messages by an author who has a ghost added none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMALL_PAIRS = 2
PAIRS = 20
# A per-pointer cost that grows with the number of connections would be about
# PAIRS / SMALL_PAIRS = 10 times higher; the margin absorbs how the ferry's
# wake-ups happen to coalesce, which depends on timing.
GROWTH_MARGIN = 1.5


def assert_exact(burst: dict[str, Any], messages: int) -> None:
    label = burst["label"]
    assert burst["messages"] == messages, label
    assert (burst["missing"], burst["doubled"], burst["misplaced"]) == (0, 0, 0), burst


def per_pointer(burst: dict[str, Any]) -> float:
    total = float(sum(burst["module_txns"].values()))
    assert total > 0, f"no module transactions counted for burst {burst['label']}"
    return total / float(burst["messages"])


# Bounds a hang, not a speed: 2-3 minutes on two idle cores, more on a loaded CI machine.
@pytest.mark.timeout(1300)
def test_scale_bench_short_counts(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "scale.py"),
            "--short",
            "--pairs",
            str(PAIRS),
            "--small-pairs",
            str(SMALL_PAIRS),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        # SIGTERM: the benchmark stops its servers and removes its files.
        process.terminate()
        stdout, stderr = process.communicate(timeout=120)
    output = stdout + stderr
    assert process.returncode == 0, output
    results = json.loads(out.read_text())

    assert results["pairs"] == PAIRS
    assert_exact(results["small"], SMALL_PAIRS)
    assert results["small"]["rooms"] == SMALL_PAIRS
    assert_exact(results["across"], PAIRS)
    assert results["across"]["rooms"] == PAIRS
    assert_exact(results["single"], PAIRS)
    assert results["single"]["rooms"] == 1
    for run in results["workers"]:
        assert_exact(run["single"], run["pairs"])
        assert_exact(run["across"], run["pairs"])
    assert results["workers"], output

    assert per_pointer(results["across"]) <= per_pointer(results["small"]) * GROWTH_MARGIN, output

    # What each activation cost Synapse in events (the rooms are private):
    # the consenting admin's invite and the bot's join in each room, the
    # "now connected" notice in each, and the request's notice in A when
    # the request was reconciled before its approval.
    events = results["setup"]["events"]
    assert events["connections"] == PAIRS
    assert (events["bot_joins"], events["bot_invites"], events["bot_other"]) == (
        2 * PAIRS,
        2 * PAIRS,
        0,
    ), output
    assert 2 * PAIRS <= events["bot_notices"] <= 3 * PAIRS, output
    # (7): every new author's first message and every control message got its
    # counterpart, and each new author exactly one ghost the module records.
    ghosts = results["ghosts"]
    authors = int(results["args"]["authors"])
    assert ghosts["authors"] == authors
    assert ghosts["control"]["missing"] == ghosts["ghosts"]["missing"] == 0, ghosts
    assert ghosts["control"]["messages"] == ghosts["ghosts"]["messages"] == authors, ghosts
    assert ghosts["control"]["rows"].get("room_connect_ghosts", 0) == 0, ghosts
    assert ghosts["ghosts"]["rows"]["room_connect_ghosts"] == authors, ghosts
    assert ghosts["ghosts"]["rows"]["users"] == authors, ghosts
    for line in (
        "RATIO latency N/1: ",
        "RATIO overhead at N: ",
        "RATIO burst across ",
        "COUNT rows per ghost: ",
        "COUNT memory per ghost: ",
    ):
        assert any(row.startswith(line) for row in stdout.splitlines()), output
