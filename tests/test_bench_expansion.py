"""The expansion benchmark's short run: it works end to end, reports its ratios,
and the database transactions per request, which unlike its times do not depend
on the machine, are what the design promises: none added to a page without
pointers, a bounded number (not one per pointer) to a page of pointers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.bench_runs import short_run

ENDPOINTS = ("/messages", "/sync initial", "/sync incremental")
# Today a pointer page costs exactly what the same contents cost without the
# module: the expansion reads what it needs from caches warmed by the first
# round. A read per pointer would add the page size (10 in the short run).
MAX_EXTRA_TXNS_POINTER_PAGE = 2

NUMBER = r"\d+\.\d+"
RATIO_LINES = {
    name: re.compile(
        rf"^RATIO {title}: /messages {NUMBER}; /sync initial {NUMBER};"
        rf" /sync incremental {NUMBER}$",
        re.MULTILINE,
    )
    for name, title in (
        ("module on/off plain", "module on/off, plain page"),
        ("module on/off pointers", "module on/off, pointer page"),
        ("pointers/plain", "pointers/plain, module on"),
    )
}


def test_expansion_benchmark_short_run_reports_ratios_and_counts(
    request: pytest.FixtureRequest,
) -> None:
    run = short_run(request, "expansion.py")
    assert run.returncode == 0, run.output
    for name, pattern in RATIO_LINES.items():
        assert pattern.search(run.stdout), f"no {name} ratio line\n{run.output}"
    assert "COUNT db txns per request on/off, plain page: " in run.stdout, run.output

    txns: dict[str, dict[str, dict[str, Any]]] = run.results()["db_txns"]
    assert sorted(txns) == sorted(ENDPOINTS), run.output
    for endpoint, row in txns.items():
        assert row["plain/on"]["median"] == row["plain/off"]["median"], (endpoint, row)
        extra = row["pointers/on"]["max"] - row["pointers/off"]["median"]
        assert extra <= MAX_EXTRA_TXNS_POINTER_PAGE, (endpoint, row)
