"""The expansion benchmark's short run: it works end to end, reports its ratios,
and the database transactions per request, which unlike its times do not depend
on the machine, are what the design promises: none added to a page without
pointers, a bounded number (not one per pointer) to a page of pointers."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "expansion.py"
# A hang guard below pytest-timeout's 300 s, so a hung run is stopped here with
# its output rather than by pytest without it; not a measurement.
TIMEOUT_S = 240
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


def run_short(json_path: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--short", "--json", str(json_path)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the benchmark then stops its Synapse processes and
        # removes their files, which SIGKILL would leave behind.
        proc.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        raise AssertionError(
            f"bench/expansion.py --short ran past {TIMEOUT_S}s\n{stdout}\n{stderr}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_expansion_benchmark_short_run_reports_ratios_and_counts(tmp_path: Path) -> None:
    json_path = tmp_path / "expansion.json"
    result = run_short(json_path)
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output
    for name, pattern in RATIO_LINES.items():
        assert pattern.search(result.stdout), f"no {name} ratio line\n{output}"
    assert "COUNT db txns per request on/off, plain page: " in result.stdout, output

    txns: dict[str, dict[str, dict[str, Any]]] = json.loads(json_path.read_text())["db_txns"]
    assert sorted(txns) == sorted(ENDPOINTS), output
    for endpoint, row in txns.items():
        assert row["plain/on"]["median"] == row["plain/off"]["median"], (endpoint, row)
        extra = row["pointers/on"]["max"] - row["pointers/off"]["median"]
        assert extra <= MAX_EXTRA_TXNS_POINTER_PAGE, (endpoint, row)
