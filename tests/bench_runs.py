"""The benchmark scripts' short runs for the benchmark tests, started side by side.

Each run spends most of its time waiting on its own Synapse processes, so two
runs started together take little longer than the slower one, where pytest
would run them one after the other. The first benchmark test of a session
starts the run of every benchmark test the session has selected; each test
then waits for its own. What a test asserts does not depend on the other run:
the counts are the module's, and the times are not asserted.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

import attrs
import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
# Test file -> the benchmark script its test runs.
SCRIPTS: Final = {
    "test_bench.py": "ferry.py",
    "test_bench_expansion.py": "expansion.py",
}
# A hang guard below pytest-timeout's 300 s, counted from the start of the
# runs, so a hung run is stopped here with its output; not a measurement.
TIMEOUT_S: Final = 270
STOP_GRACE_S: Final = 30


@attrs.frozen
class Finished:
    returncode: int
    stdout: str
    stderr: str
    json_path: Path

    @property
    def output(self) -> str:
        return f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"

    def results(self) -> dict[str, Any]:
        """What the run wrote with ``--json``."""
        results: dict[str, Any] = json.loads(self.json_path.read_text())
        return results


@attrs.frozen
class _Running:
    process: subprocess.Popen[str]
    json_path: Path
    started: float


_running: dict[str, _Running] = {}


def _start(script: str, directory: Path) -> _Running:
    json_path = directory / f"{Path(script).stem}.json"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / script), "--short", "--json", str(json_path)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return _Running(process, json_path, time.monotonic())


def _stop(running: _Running) -> tuple[str, str]:
    # SIGTERM first: the benchmark then stops its Synapse processes and
    # removes their files, which SIGKILL would leave behind.
    running.process.send_signal(signal.SIGTERM)
    try:
        return running.process.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        running.process.kill()
        return running.process.communicate()


def _stop_all() -> None:
    for running in _running.values():
        if running.process.poll() is None:
            _stop(running)


def short_run(request: pytest.FixtureRequest, script: str) -> Finished:
    """The finished short run of ``bench/<script>``, with ``--json``."""
    if not _running:
        directory: Path = request.getfixturevalue("tmp_path_factory").mktemp("bench")
        items = request.session.items
        selected = {SCRIPTS[i.path.name] for i in items if i.path.name in SCRIPTS} | {script}
        request.config.add_cleanup(_stop_all)
        for name in sorted(selected):
            _running[name] = _start(name, directory)
    running = _running.get(script)
    if running is None:  # not among the session's items (run some other way): start it now
        running = _running[script] = _start(script, request.getfixturevalue("tmp_path"))
    remaining = TIMEOUT_S - (time.monotonic() - running.started)
    try:
        stdout, stderr = running.process.communicate(timeout=max(remaining, 1))
    except subprocess.TimeoutExpired:
        stdout, stderr = _stop(running)
        raise AssertionError(
            f"bench/{script} --short ran past {TIMEOUT_S} s\n{stdout}\n{stderr}"
        ) from None
    return Finished(running.process.returncode, stdout, stderr, running.json_path)
