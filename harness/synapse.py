"""``Homeserver``: one real Synapse process with the module loaded."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness import config as hsconfig
from harness.client import JsonDict, MatrixClient, register_with_shared_secret
from harness.ports import free_port
from harness.postgres import PostgresServer
from harness.process import (
    DEFAULT_START_TIMEOUT,
    SynapseProcess,
    keep_test_dirs,
    remove_dir,
    tail_lines,
)
from harness.tls import CertificateAuthority

INFO_PATH = "/_synapse/client/org.matrix.msc2923/info"
HOMESERVER_APP = "synapse.app.homeserver"
WORKER_APP = "synapse.app.generic_worker"


def unique_db_name(prefix: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in prefix.lower())
    return f"synapse_{cleaned}_{secrets.token_hex(4)}"


class SynapseServer(ABC):
    """What ``Homeserver`` and ``WorkerDeployment`` share: users made through the
    shared-secret admin API, and the clean-up of their directory and database.

    ``registration_url`` is where the admin API is served (the main process);
    the clients ``register`` and ``client`` return talk to ``client_url``.
    """

    name: str
    server_name: str
    client_url: str
    registration_url: str
    registration_shared_secret: str
    directory: Path
    postgres: PostgresServer | None
    database_name: str | None
    _destroyed: bool

    @abstractmethod
    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM every process and wait for it."""

    def destroy(self) -> None:
        """Stop, drop the database and delete every file. Safe to call twice."""
        if self._destroyed:
            return
        self._destroyed = True
        try:
            self.stop()
        finally:
            try:
                if (
                    self.postgres is not None
                    and self.database_name is not None
                    and not keep_test_dirs()
                ):
                    self.postgres.drop_database(self.database_name)
            finally:
                remove_dir(self.directory)

    def client(self, access_token: str | None = None, user_id: str | None = None) -> MatrixClient:
        return MatrixClient(self.client_url, access_token, user_id)

    def register(
        self, localpart: str, admin: bool = False, *, displayname: str | None = None
    ) -> MatrixClient:
        """Create a user with the shared-secret admin API and return its client.

        A deployment registers through main and returns a client for its client
        worker (``.with_base_url(deployment.main_client_url)`` for main)."""
        registered = register_with_shared_secret(
            self.registration_url,
            self.registration_shared_secret,
            localpart,
            admin=admin,
            displayname=displayname,
        )
        if self.registration_url == self.client_url:
            return registered
        return registered.with_base_url(self.client_url)

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"


class Homeserver(SynapseServer):
    """A single-process Synapse in its own temporary directory.

    Its server name is ``localhost:<federation port>``, so other harness homeservers
    reach its TLS federation listener directly, without SRV or .well-known lookups.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        name: str = "hs",
        module_config: Mapping[str, Any] | None = None,
        postgres: PostgresServer | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        ca: CertificateAuthority | None = None,
    ) -> None:
        self.name = name
        self.directory = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base_dir))
        try:
            self.postgres = postgres
            self.client_port = free_port()
            self.federation_port = free_port()
            self.metrics_port = free_port()
            self.server_name = f"localhost:{self.federation_port}"
            self.client_url = f"http://127.0.0.1:{self.client_port}"
            self.federation_url = f"https://127.0.0.1:{self.federation_port}"
            self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/_synapse/metrics"
            self.registration_url = self.client_url
            self.files = hsconfig.ServerDirectory(self.directory, ca)
            self.registration_shared_secret = self.files.registration_shared_secret
            self.config_path = self.files.homeserver_yaml
            self.log_config_path, self.log_path = self.files.log_files("homeserver")

            self.database_name: str | None = None
            if postgres is not None:
                self.database_name = unique_db_name(name)
                self._database = hsconfig.postgres_database(postgres, self.database_name)
            else:
                self._database = hsconfig.sqlite_database(self.sqlite_path)

            self.module_config: dict[str, Any] = dict(module_config or {})
            self.config_overrides: dict[str, Any] = dict(config_overrides or {})
            self.write_config()
            self.process = SynapseProcess(
                name,
                app=HOMESERVER_APP,
                config_paths=[self.config_path],
                workdir=self.directory,
                log_path=self.log_path,
                health_url=f"{self.client_url}/health",
                client_url=self.client_url,
            )
            self._destroyed = False
            # Last, so nothing can fail between creating the database and the object
            # existing to drop it in destroy().
            if postgres is not None and self.database_name is not None:
                postgres.create_database(self.database_name)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def __repr__(self) -> str:
        return f"<Homeserver {self.name} {self.server_name} client={self.client_url}>"

    # -- configuration -------------------------------------------------------

    def write_config(self) -> None:
        self.files.write_homeserver_yaml(
            server_name=self.server_name,
            public_baseurl=self.client_url + "/",
            listeners=[
                hsconfig.http_listener(self.client_port, ["client"]),
                hsconfig.http_listener(self.federation_port, ["federation", "keys"], tls=True),
                hsconfig.metrics_listener(self.metrics_port),
            ],
            database=self._database,
            log_config_path=self.log_config_path,
            module_config=self.module_config,
            overrides=self.config_overrides,
        )

    def reconfigure(
        self,
        module_config: Mapping[str, Any] | None = None,
        config_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the module config and/or overrides; takes effect on the next start."""
        if module_config is not None:
            self.module_config = dict(module_config)
        if config_overrides is not None:
            self.config_overrides = dict(config_overrides)
        self.write_config()

    def use_postgres(self, postgres: PostgresServer, database_name: str) -> None:
        """Run on ``database_name`` from the next start (a database ported from
        this server's SQLite file); it is dropped with the server."""
        self.postgres = postgres
        self.database_name = database_name
        self._database = hsconfig.postgres_database(postgres, database_name)
        self.write_config()

    @property
    def sqlite_path(self) -> Path:
        return self.directory / "homeserver.db"

    # -- lifecycle -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process.running

    def spawn(self) -> None:
        """Start the process without waiting; pair with ``wait_ready`` to start several
        homeservers at once."""
        self.process.spawn()

    def wait_ready(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        try:
            self.process.wait_healthy(timeout)
        except Exception:
            self.process.stop(timeout=10)
            raise

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> Homeserver:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; returns the exit code (None if it never ran)."""
        return self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush or clean up, as in a crash."""
        self.process.kill()

    def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> Homeserver:
        self.stop()
        return self.start(timeout)

    def start_expect_failure(self, timeout: float = 60) -> tuple[int, str]:
        """Start and expect the process to exit by itself; return (code, output).

        The output is stdout/stderr followed by the log file, since Synapse reports
        config errors before its logging is set up and later ones through it.
        """
        return self.process.run_expecting_failure(timeout)

    # -- using it --------------------------------------------------------------

    def info(self) -> JsonDict:
        """The module's unauthenticated info endpoint."""
        return self.client().request("GET", INFO_PATH, authenticated=False)

    # -- diagnostics -----------------------------------------------------------

    def log_text(self) -> str:
        return self.process.log_text()

    def output_text(self) -> str:
        return self.process.output_text()

    def log_tails(self, lines: int = 80) -> dict[str, str]:
        """Recent output per source, for attaching to a failed test's report."""
        return {
            f"{self.name} ({self.server_name}) homeserver.log": tail_lines(self.log_text(), lines),
            f"{self.name} ({self.server_name}) stdout/stderr": tail_lines(
                self.output_text(), lines // 4
            ),
        }


def start_together(homeservers: Iterable[Homeserver]) -> None:
    """Spawn every homeserver, then wait for each to be ready, so they start at once:
    each start is mostly single-threaded Python, and CI has two cores."""
    pending = list(homeservers)
    for hs in pending:
        hs.spawn()
    for hs in pending:
        hs.wait_ready()


class HomeserverFactory:
    """Makes homeservers that belong to one test and destroys them all at its end."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self._base_dir = base_dir
        self.created: list[Homeserver] = []

    def __call__(self, *, start: bool = True, **kwargs: Any) -> Homeserver:
        """``Homeserver(**kwargs)``, started unless ``start=False``."""
        kwargs.setdefault("name", f"hs-{len(self.created) + 1}")
        hs = Homeserver(self._base_dir, **kwargs)
        self.created.append(hs)
        if start:
            hs.start()
        return hs

    def log_tails(self, lines: int = 80) -> dict[str, str]:
        tails: dict[str, str] = {}
        for hs in self.created:
            tails.update(hs.log_tails(lines))
        return tails

    def destroy_all(self) -> None:
        """Destroy every homeserver made, even if destroying one of them fails."""
        errors: list[Exception] = []
        for hs in reversed(self.created):
            try:
                hs.destroy()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
