"""Child-process plumbing shared by every server the harness runs.

``ManagedProcess`` owns one OS process: spawning it with output captured to a file,
waiting for it to become ready, and stopping it without leaving it behind.
``SynapseProcess`` adds what is specific to a Synapse main process or worker.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1

# Every process still running when the interpreter exits is killed, so an aborted
# test run (Ctrl-C, a crashing fixture) leaves nothing listening behind it.
_live: set[ManagedProcess] = set()


def _kill_leftovers() -> None:
    for proc in list(_live):
        proc.kill()


atexit.register(_kill_leftovers)


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up here, not in the child: between fork and exec only the call is safe.
_prctl = _load_prctl()


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel to SIGKILL it when
    the test runner dies, which atexit cannot cover (SIGKILL, OOM)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


KEEP_DIRS_ENV = "ROOM_CONNECT_KEEP_TEST_DIRS"


def keep_test_dirs() -> bool:
    """Whether to leave server directories (configs, logs, databases) behind for
    inspection instead of deleting them; set ROOM_CONNECT_KEEP_TEST_DIRS=1."""
    return os.environ.get(KEEP_DIRS_ENV, "") not in ("", "0")


def remove_dir(path: Path) -> None:
    if not keep_test_dirs():
        shutil.rmtree(path, ignore_errors=True)


def tail_lines(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _size(path: Path) -> int:
    """Characters in ``path`` so far, to read only what a later run appends."""
    return len(read_text(path))


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


# Generous: a Synapse start takes 2-5 s alone, but CI runs on two cores that may
# be busy with the other servers of a deployment starting at the same time.
DEFAULT_START_TIMEOUT = 120.0


class ProcessStartError(RuntimeError):
    """A child process exited or did not become ready in time."""


class ManagedProcess:
    """One long-running child process with stdout and stderr appended to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        output_path: Path,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.output_path = output_path
        self.env = dict(env) if env is not None else None
        self.user = user
        self.stop_signal = stop_signal
        self._popen: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def spawn(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        with self.output_path.open("ab") as out:
            # A marker per start keeps the output of earlier runs (a crash before a
            # restart, say) readable in the same file.
            out.write(f"\n=== {time.strftime('%H:%M:%S')} starting: {self.argv!r}\n".encode())
            out.flush()
            self._popen = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for pytest must not kill servers
                # before the fixtures have had their say.
                start_new_session=True,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user is not None else None,
                preexec_fn=_die_with_parent,
            )
        _live.add(self)

    def wait_until(
        self,
        ready: Callable[[], bool],
        timeout: float,
        *,
        interval: float = 0.1,
        describe_failure: Callable[[], str] | None = None,
    ) -> None:
        """Poll ``ready`` until it is true; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                detail = describe_failure() if describe_failure else self.output_tail()
                raise ProcessStartError(
                    f"{self.name} exited with code {self.returncode} while starting:\n{detail}"
                )
            if ready():
                return
            if time.monotonic() >= deadline:
                detail = describe_failure() if describe_failure else self.output_tail()
                raise ProcessStartError(
                    f"{self.name} was not ready after {timeout:.0f}s:\n{detail}"
                )
            # Start-up readiness has no notification to wait on; a short poll is it.
            time.sleep(interval)

    def wait_exit(self, timeout: float) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.wait(timeout)

    def send_signal(self, sig: signal.Signals) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(sig)

    def stop(self, timeout: float = 30) -> int | None:
        """Send ``stop_signal``, then SIGKILL if it has not exited within ``timeout``."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self._popen.send_signal(self.stop_signal)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        _live.discard(self)
        return self._popen.returncode

    def kill(self) -> None:
        """SIGKILL without any chance to clean up, as a crash would."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait()
        _live.discard(self)

    def output_text(self) -> str:
        return read_text(self.output_path)

    def output_tail(self, lines: int = 60) -> str:
        return tail_lines(self.output_text(), lines)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status: int = resp.status
            return 200 <= status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class SynapseProcess(ManagedProcess):
    """A Synapse main process or worker, started from a list of config files."""

    def __init__(
        self,
        name: str,
        *,
        app: str,
        config_paths: Sequence[Path],
        workdir: Path,
        log_path: Path,
        health_url: str,
        client_url: str | None = None,
    ) -> None:
        argv = [sys.executable, "-m", app]
        for path in config_paths:
            argv += ["-c", str(path)]
        env = dict(os.environ)
        # Unbuffered, so the last words of a process that dies at start-up (a config
        # error, say) are in its output file rather than lost in a buffer.
        env["PYTHONUNBUFFERED"] = "1"
        super().__init__(name, argv, cwd=workdir, output_path=workdir / f"{name}.out", env=env)
        self.app = app
        self.log_path = log_path
        self.health_url = health_url
        self.client_url = client_url

    def log_text(self) -> str:
        """What Synapse logged through its log config (the module logs here)."""
        return read_text(self.log_path)

    def failure_report(self, lines: int = 60) -> str:
        # Config errors are printed to stderr before logging is set up; later
        # failures go to the log file. Show both.
        return (
            f"--- {self.output_path.name} (stdout/stderr) ---\n{self.output_tail(lines)}\n"
            f"--- {self.log_path.name} ---\n{tail_lines(self.log_text(), lines)}"
        )

    def wait_healthy(self, timeout: float) -> None:
        self.wait_until(
            lambda: http_ok(self.health_url),
            timeout,
            interval=0.2,
            describe_failure=self.failure_report,
        )

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        self.spawn()
        try:
            self.wait_healthy(timeout)
        except ProcessStartError:
            self.stop(timeout=10)
            raise

    def run_expecting_failure(self, timeout: float = 60) -> tuple[int, str]:
        """Start, and return (exit code, output of this run) once it exits by itself.

        Raises if it becomes healthy instead, or keeps running past ``timeout``.
        """
        output_offset = _size(self.output_path)
        log_offset = _size(self.log_path)
        self.spawn()
        deadline = time.monotonic() + timeout
        while self.running:
            if http_ok(self.health_url, timeout=0.5):
                self.stop(timeout=10)
                raise AssertionError(f"{self.name} started although it was expected to fail")
            if time.monotonic() >= deadline:
                self.stop(timeout=10)
                raise AssertionError(
                    f"{self.name} neither failed nor became healthy within {timeout:.0f}s:\n"
                    + self.failure_report()
                )
            try:
                self.wait_exit(0.2)
            except subprocess.TimeoutExpired:
                continue
        code = self.returncode
        assert code is not None
        _live.discard(self)
        return code, self.output_text()[output_offset:] + "\n" + self.log_text()[log_offset:]
