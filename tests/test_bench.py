"""The ferry benchmark runs end to end in its CI size (figures are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ferry_bench_short_runs_and_reports_ratios() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "ferry.py"), "--short"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = result.stdout.splitlines()
    for prefix in (
        "RATIO latency: module p50 / relay p50 = ",
        "RATIO throughput overhead: 1 - with/without = ",
        "RATIO backlog: ",
    ):
        assert any(line.startswith(prefix) for line in lines), f"no {prefix!r} line in:\n{output}"
