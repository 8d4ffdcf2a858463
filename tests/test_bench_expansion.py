"""The expansion benchmark's CI smoke run: it works end to end and reports.

Timing is not asserted: on a shared two-core machine the figures are for
people to read, and the benchmark itself checks every page it measures.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "expansion.py"
# Well above what --short needs, below pytest-timeout's 300 s, so a hung run
# is stopped here with its output rather than by pytest without it.
TIMEOUT_S = 240

NUMBER = r"\d+\.\d+"
RATIO_LINES = {
    "module on/off plain": re.compile(
        rf"^RATIO module on/off, plain page: /messages {NUMBER};"
        rf" /sync initial {NUMBER}; /sync incremental {NUMBER}$",
        re.MULTILINE,
    ),
    "module on/off pointers": re.compile(
        rf"^RATIO module on/off, pointer page: /messages {NUMBER};"
        rf" /sync initial {NUMBER}; /sync incremental {NUMBER}$",
        re.MULTILINE,
    ),
    "pointers/plain": re.compile(
        rf"^RATIO pointers/plain, module on: /messages {NUMBER};"
        rf" /sync initial {NUMBER}; /sync incremental {NUMBER}$",
        re.MULTILINE,
    ),
}


def run_short() -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--short"],
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


def test_expansion_benchmark_short_run_reports_ratios() -> None:
    result = run_short()
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output
    for name, pattern in RATIO_LINES.items():
        assert pattern.search(result.stdout), f"no {name} ratio line\n{output}"
    for endpoint in ("/messages limit=100", "/sync initial limit=100", "/sync incremental 100"):
        assert endpoint in result.stdout, output
