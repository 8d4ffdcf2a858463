"""``make demo`` stopped the way people stop it, Ctrl-C (SIGINT) or SIGTERM:
Synapse stopped, its files removed, and exit code 0, so ``make`` reports no
error.

The demo runs as ``scripts/demo.sh`` runs it (``python -m demo.run``, which
the script ``exec``s, so the signal reaches Python directly), in a directory
of the test's own so its ``.demo`` directory can be checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READY = "Press Ctrl-C to stop."
START_TIMEOUT = 240


class Output:
    """The demo's output, read line by line on a thread so waiting can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)
            if READY in line:
                self.ready.set()
        self.ready.set()  # the demo ended without getting there

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def processes_mentioning(directory: Path) -> list[int]:
    """PIDs whose command line names a path under ``directory`` (Synapse's
    ``-c .../homeserver.yaml``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if str(directory).encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_demo_stopped_by_a_signal_cleans_up_and_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("DEMO_ONCE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo.run"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = Output(proc)
        output.ready.wait(START_TIMEOUT)
        assert proc.poll() is None, output.text()
        assert READY in "".join(output.lines), output.text()
        # The homeserver runs from the demo's directory: what must go away.
        assert (tmp_path / ".demo").is_dir()
        assert processes_mentioning(tmp_path), output.text()

        proc.send_signal(signum)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert code == 0, output.text()
    assert "Stopping Synapse" in output.text()
    assert not (tmp_path / ".demo").exists()
    assert processes_mentioning(tmp_path) == []
