"""A private PostgreSQL cluster for one test session.

The cluster lives in a temporary directory, listens on a free loopback port and
its own Unix socket directory, and trusts every local connection. It never
touches a system-wide cluster, so it works whether or not one is installed and
running.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.ports import free_port
from harness.process import ManagedProcess, remove_dir, tail_lines


def _psycopg2() -> Any:
    # Imported on use: the demo imports this package without the test extras,
    # which are what bring psycopg2.
    import psycopg2  # type: ignore[import-untyped,unused-ignore]
    import psycopg2.extensions  # type: ignore[import-untyped,unused-ignore]
    import psycopg2.sql  # type: ignore[import-untyped,unused-ignore]

    return psycopg2


# PostgreSQL refuses to run as root; this is the account Debian's package creates.
_SYSTEM_USER = "postgres"
_REQUIRED_BINARIES = ("initdb", "postgres")


class PostgresUnavailableError(RuntimeError):
    """No usable PostgreSQL installation was found."""


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def find_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` live: $PG_BINDIR, pg_config, or Debian's layout."""
    candidates: list[str] = []
    if env := os.environ.get("PG_BINDIR"):
        candidates.append(env)
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            candidates.append(
                subprocess.run(
                    [pg_config, "--bindir"], check=True, capture_output=True, text=True
                ).stdout.strip()
            )
    # Newest major version first: any is fine for the module, newest is likeliest
    # to be what a developer has the client tools for.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if all((Path(candidate) / name).is_file() for name in _REQUIRED_BINARIES):
            return Path(candidate)
    raise PostgresUnavailableError(
        "PostgreSQL server binaries (initdb, postgres) not found; looked in "
        f"{candidates or 'no candidate directories'}. Install the 'postgresql' package "
        "or set PG_BINDIR."
    )


def _run_as_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailableError(
            f"running as root, but there is no '{_SYSTEM_USER}' user to run PostgreSQL as"
        ) from None
    return _SYSTEM_USER


def _check_traversable(path: Path) -> None:
    """PostgreSQL runs as another user when we are root; it must reach its directory."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise PostgresUnavailableError(
                f"{parent} is not searchable by other users, so the '{_SYSTEM_USER}' user "
                f"cannot reach {path}; use a base directory such as /tmp"
            )


class PostgresServer:
    """A throw-away PostgreSQL cluster: ``start()``, use, ``stop()``."""

    def __init__(self, base_dir: Path | None = None, *, user: str = "harness") -> None:
        self.bindir = find_bindir()
        self.user = user
        self.host = "127.0.0.1"
        self.port = free_port()
        self._run_as = _run_as_user()
        self.directory = Path(tempfile.mkdtemp(prefix="postgres-", dir=base_dir))
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "sockets"
        self._process: ManagedProcess | None = None
        self._created: set[str] = set()

    def __repr__(self) -> str:
        return f"<PostgresServer {self.host}:{self.port} in {self.directory}>"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def log_text(self) -> str:
        return self._process.output_text() if self._process is not None else ""

    def log_tails(self, lines: int = 40) -> dict[str, str]:
        return {f"postgres {self.host}:{self.port}": tail_lines(self.log_text(), lines)}

    def start(self, timeout: float = 60) -> PostgresServer:
        self.socket_dir.mkdir()
        if self._run_as is not None:
            _check_traversable(self.directory)
            account = pwd.getpwnam(self._run_as)
            for path in (self.directory, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        initdb = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                # Durability is irrelevant for a cluster deleted after the run.
                "--no-sync",
            ],
            cwd=self.directory,
            user=self._run_as,
            group=self._run_as,
            extra_groups=[] if self._run_as else None,
            capture_output=True,
            text=True,
            check=False,
        )
        if initdb.returncode != 0:
            raise PostgresUnavailableError(
                f"initdb failed with code {initdb.returncode}:\n{initdb.stdout}\n{initdb.stderr}"
            )
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
        }
        argv = [str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self._process = ManagedProcess(
            "postgres",
            argv,
            cwd=self.directory,
            output_path=self.log_path,
            user=self._run_as,
            # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client
            # to disconnect; SIGINT ("fast") rolls them back and exits.
            stop_signal=signal.SIGINT,
        )
        self._process.spawn()
        self._process.wait_until(self._accepts_connections, timeout)
        return self

    def _accepts_connections(self) -> bool:
        try:
            _psycopg2().connect(self.dsn("postgres"), connect_timeout=2).close()
        except _psycopg2().OperationalError:
            return False
        return True

    def dsn(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    @contextlib.contextmanager
    def connect(self, dbname: str) -> Iterator[Any]:
        """A psycopg2 connection in autocommit mode, closed on exit."""
        conn = _psycopg2().connect(self.dsn(dbname), connect_timeout=10)
        try:
            conn.set_isolation_level(_psycopg2().extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            yield conn
        finally:
            conn.close()

    def create_database(self, name: str) -> None:
        """Create ``name`` the way Synapse insists on: UTF8 with C collation."""
        statement = (
            _psycopg2()
            .sql.SQL(
                "CREATE DATABASE {} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            )
            .format(_psycopg2().sql.Identifier(name))
        )
        with self.connect("postgres") as conn, conn.cursor() as cur:
            cur.execute(statement)
        self._created.add(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, first disconnecting anything still using it."""
        with self.connect("postgres") as conn, conn.cursor() as cur:
            sql = _psycopg2().sql
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        self._created.discard(name)

    def query(self, dbname: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``%s`` placeholders) and return its rows, if any."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(sql, tuple(params))
            if cur.description is None:
                return []
            return [tuple(row) for row in cur.fetchall()]

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        if self._process is not None:
            self._process.stop(timeout=30)
        remove_dir(self.directory)
        self._created.clear()
