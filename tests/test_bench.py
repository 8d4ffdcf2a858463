"""The ferry benchmark's short run: it works end to end, reports its ratios, and
the module's counts, which unlike its times do not depend on the machine, are
what the design promises."""

from __future__ import annotations

import pytest

from tests.bench_runs import short_run

# Today one message at a time costs 6 (2 feed reads: the original's and its
# pointer's; the ferry's read, its look-up of transactions already sent and
# its record; one expansion read when the observer first sees the pointer),
# and a backlog fewer, as the ferry batches.
MAX_MODULE_TXNS_PER_POINTER = 7.0
# The feed skips rooms without connections using Synapse's in-memory stream
# caches: no read per message. A little room for work left over from set-up.
MAX_UNCONNECTED_MODULE_TXNS = 2


def test_ferry_bench_short_run_reports_ratios_and_counts(request: pytest.FixtureRequest) -> None:
    run = short_run(request, "ferry.py")
    assert run.returncode == 0, run.output
    lines = run.stdout.splitlines()
    for prefix in (
        "RATIO latency: module p50 / relay p50 = ",
        "RATIO throughput overhead: 1 - with/without = ",
        "RATIO backlog: ",
        "COUNT module DB txns per pointer: ",
        "COUNT pointers per original: ",
        "RATIO ghosts: ghost p50 / bot p50 = ",
        "RATIO new author: first message p50 / steady p50 = ",
        "COUNT ghost senders: ",
    ):
        assert any(line.startswith(prefix) for line in lines), f"no {prefix!r} in:\n{run.output}"

    results = run.results()
    counts = results["counts"]
    pointers = counts["pointers"]
    # Every message alice sent in A (warm-up, latency and backlog) crossed once.
    warmup = int(results["args"]["warmup"])
    sent = warmup + results["latency"]["module"]["n"] + results["backlog"]["sent"]
    assert pointers["originals"] == sent, run.stdout
    assert (pointers["fewest"], pointers["most"], pointers["strays"]) == (1, 1, 0), run.stdout

    assert 0 < counts["module_txns_per_pointer"] <= MAX_MODULE_TXNS_PER_POINTER, run.stdout

    assert counts["unconnected_sends"] >= 5 * MAX_UNCONNECTED_MODULE_TXNS, run.stdout
    assert counts["unconnected_module_txns"] <= MAX_UNCONNECTED_MODULE_TXNS, run.stdout

    # (g): each counterpart came from whom the receiving room asked for: the
    # author's own ghost by default, the bot where the consent says "bot"; and
    # every new author got a ghost of their own.
    ghosts = results["ghosts"]
    senders = ghosts["counts"]
    rounds = int(results["args"]["ghost_messages"])
    new_authors = int(results["args"]["new_authors"])
    assert len(ghosts["steady_ghosts"]) == len(ghosts["steady_bot"]) == rounds, run.stdout
    assert senders["steady_ghost_by_own_ghost"] == rounds, run.stdout
    assert senders["steady_bot_by_bot"] == rounds, run.stdout
    assert len(ghosts["new_authors"]) == len(ghosts["new_baseline"]) == new_authors, run.stdout
    assert senders["new_authors_by_own_ghost"] == new_authors, run.stdout
    assert senders["new_author_ghosts"] == new_authors, run.stdout
