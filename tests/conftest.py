"""Fixtures that start real servers for the test suite.

Servers are session-scoped wherever tests can share them: a Synapse start costs a
few seconds of the two cores CI has, and tests isolate themselves by creating
their own users and rooms. Tests that change a server's config or lifecycle use
``make_homeserver`` for one of their own.

Set ROOM_CONNECT_KEEP_TEST_DIRS=1 to keep every server's directory (configs,
logs, databases) after the run for inspection; the path is printed at the end.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import pytest

from harness import (
    CertificateAuthority,
    Homeserver,
    HomeserverFactory,
    PostgresServer,
    RedisServer,
    WorkerDeployment,
)
from harness.process import keep_test_dirs, remove_dir
from harness.synapse import start_together

LOG_TAIL_LINES = 80

# Fixture name -> markers added to every test that uses it, directly or through
# another fixture, so `-m "not postgres"` works without decorating each test.
_FIXTURE_MARKERS = {
    "postgres": ("postgres",),
    "homeserver_pg": ("postgres",),
    "federation": ("federation",),
    "workers": ("workers", "postgres"),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs PostgreSQL (a private cluster is started)")
    config.addinivalue_line("markers", "federation: runs two homeservers that federate")
    config.addinivalue_line("markers", "workers: runs Synapse as main process plus workers")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixturenames: list[str] = getattr(item, "fixturenames", [])
        markers = {m for name in fixturenames for m in _FIXTURE_MARKERS.get(name, ())}
        for marker in sorted(markers):
            item.add_marker(marker)


# -- attaching server logs to failures -------------------------------------------


@runtime_checkable
class HasLogTails(Protocol):
    def log_tails(self, lines: int = ...) -> dict[str, str]: ...


def _log_sources(value: Any) -> list[HasLogTails]:
    if isinstance(value, HasLogTails):
        return [value]
    if isinstance(value, tuple | list):
        return [source for item in value for source in _log_sources(item)]
    return []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        seen: set[int] = set()
        for value in funcargs.values():
            for source in _log_sources(value):
                if id(source) in seen:
                    continue
                seen.add(id(source))
                try:
                    tails = source.log_tails(LOG_TAIL_LINES)
                except OSError as exc:
                    tails = {repr(source): f"<could not read logs: {exc}>"}
                for title, text in tails.items():
                    report.sections.append((f"{title} (last lines, {report.when})", text))
    return report


# -- directories -------------------------------------------------------------------


@pytest.fixture(scope="session")
def harness_dir() -> Iterator[Path]:
    """Parent directory of every server's files for this run.

    Not pytest's tmp_path: PostgreSQL runs as another user when the suite runs as
    root, and must be able to reach its data directory, which pytest's per-user
    base directory (mode 0700) forbids.
    """
    path = Path(tempfile.mkdtemp(prefix="room-connect-tests-"))
    path.chmod(0o755)
    yield path
    if keep_test_dirs():
        print(f"\nkept test server directories in {path}")
    remove_dir(path)


# -- servers -------------------------------------------------------------------------

_Server = TypeVar("_Server")


def _running(
    server: _Server, start: Callable[[], object], stop: Callable[[], object]
) -> Iterator[_Server]:
    """A fixture's body: ``start()``, yield ``server``, and ``stop()`` at teardown,
    also when starting failed (a half-started server still has processes or files)."""
    try:
        start()
        yield server
    finally:
        stop()


@pytest.fixture(scope="session")
def postgres(harness_dir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(harness_dir)
    yield from _running(server, server.start, server.stop)


@pytest.fixture(scope="session")
def redis(harness_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(harness_dir)
    yield from _running(server, server.start, server.stop)


@pytest.fixture(scope="session")
def homeserver(harness_dir: Path) -> Iterator[Homeserver]:
    """A shared Synapse on SQLite with the module's default config."""
    hs = Homeserver(harness_dir, name="hs-sqlite")
    yield from _running(hs, hs.start, hs.destroy)


@pytest.fixture(scope="session")
def homeserver_pg(harness_dir: Path, postgres: PostgresServer) -> Iterator[Homeserver]:
    """A shared Synapse on PostgreSQL with the module's default config."""
    hs = Homeserver(harness_dir, name="hs-pg", postgres=postgres)
    yield from _running(hs, hs.start, hs.destroy)


@pytest.fixture(scope="session")
def federation(harness_dir: Path) -> Iterator[tuple[Homeserver, Homeserver]]:
    """Two Synapses on SQLite that federate with each other over loopback TLS."""
    ca = CertificateAuthority(harness_dir / "federation-ca")
    pair = (
        Homeserver(harness_dir, name="hs1", ca=ca),
        Homeserver(harness_dir, name="hs2", ca=ca),
    )
    try:
        start_together(pair)
        yield pair
    finally:
        for hs in pair:
            hs.destroy()


@pytest.fixture(scope="session")
def workers(
    harness_dir: Path, postgres: PostgresServer, redis: RedisServer
) -> Iterator[WorkerDeployment]:
    """Main process + event persister + client worker on PostgreSQL and Redis."""
    deployment = WorkerDeployment(postgres, redis, base_dir=harness_dir)
    yield from _running(deployment, deployment.start, deployment.destroy)


@pytest.fixture
def make_homeserver(harness_dir: Path) -> Iterator[HomeserverFactory]:
    """Factory for per-test homeservers, all destroyed when the test ends.

    ``make_homeserver(module_config={...}, postgres=pg, config_overrides={...},
    start=False)``; any ``Homeserver`` keyword works.
    """
    factory = HomeserverFactory(harness_dir)
    try:
        yield factory
    finally:
        factory.destroy_all()
