"""``WorkerDeployment``: Synapse split into a main process and two workers.

Layout, all loading the module from the shared homeserver.yaml:

* ``main``: registration/admin API, federation, background tasks, and the
  process the module acts on by default.
* ``event_persister``: the only writer of the events stream, so every event sent
  anywhere in the deployment is persisted here.
* ``client_worker``: a generic worker serving the client API (including /sync and
  sends, which it forwards to the persister over HTTP replication).

Replication between them runs over Redis; ``instance_map`` tells the workers
where the main process's and the persister's replication listeners are.

``ferry_workers`` adds generic workers with no client traffic, for the
module's ``worker`` option to name (the sharded ferry); ``reconfigure``
rewrites the module's config for the next start of each process.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import config as hsconfig
from harness.client import JsonDict, MatrixClient
from harness.ports import free_port
from harness.postgres import PostgresServer
from harness.process import DEFAULT_START_TIMEOUT, SynapseProcess, tail_lines
from harness.redis import RedisServer
from harness.synapse import (
    HOMESERVER_APP,
    INFO_PATH,
    WORKER_APP,
    SynapseServer,
    unique_db_name,
)

MAIN = "main"
EVENT_PERSISTER = "event_persister"
CLIENT_WORKER = "client_worker"


class WorkerDeployment(SynapseServer):
    """Main process, event persister and client worker on one PostgreSQL database."""

    def __init__(
        self,
        postgres: PostgresServer,
        redis: RedisServer,
        module_config: Mapping[str, Any] | None = None,
        *,
        base_dir: Path | None = None,
        name: str = "workers",
        config_overrides: Mapping[str, Any] | None = None,
        ferry_workers: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.postgres: PostgresServer = postgres
        self.redis = redis
        self.module_config: dict[str, Any] = dict(module_config or {})
        self.config_overrides: dict[str, Any] = dict(config_overrides or {})
        self.database_name: str = unique_db_name(name)
        self._destroyed = False

        self._ports = {
            "main_client": free_port(),
            "main_federation": free_port(),
            "main_replication": free_port(),
            "persister_replication": free_port(),
            "client_worker_client": free_port(),
        }
        self.ferry_worker_names = tuple(ferry_workers)
        self._replication_secret = secrets.token_hex(16)
        self._metrics_ports = {
            proc: free_port() for proc in (MAIN, EVENT_PERSISTER, CLIENT_WORKER, *ferry_workers)
        }
        self.server_name = f"localhost:{self._ports['main_federation']}"
        self.main_client_url = f"http://127.0.0.1:{self._ports['main_client']}"
        self.client_url = f"http://127.0.0.1:{self._ports['client_worker_client']}"
        self.registration_url = self.main_client_url
        self.persister_replication_url = f"http://127.0.0.1:{self._ports['persister_replication']}"
        self.metrics_urls = {
            proc: f"http://127.0.0.1:{port}/_synapse/metrics"
            for proc, port in self._metrics_ports.items()
        }

        self.directory = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base_dir))
        try:
            self.files = hsconfig.ServerDirectory(self.directory)
            self.registration_shared_secret = self.files.registration_shared_secret
            self.config_path = self._write_shared_config()
            self.main, self.event_persister, self.client_worker = self._processes()
            self.ferry_worker_procs = [self._ferry_worker(name) for name in self.ferry_worker_names]
            # Last, so nothing can fail between creating the database and the object
            # existing to drop it in destroy().
            postgres.create_database(self.database_name)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.processes: dict[str, SynapseProcess] = {
            proc.name: proc
            for proc in (
                self.main,
                self.event_persister,
                self.client_worker,
                *self.ferry_worker_procs,
            )
        }

    def _write_shared_config(self) -> Path:
        ports = self._ports
        worker_settings = {
            "redis": {"enabled": True, "host": self.redis.host, "port": self.redis.port},
            # Main must be listed as "main"; the persister because it writes a stream.
            "instance_map": {
                MAIN: {"host": "127.0.0.1", "port": ports["main_replication"]},
                EVENT_PERSISTER: {"host": "127.0.0.1", "port": ports["persister_replication"]},
            },
            "stream_writers": {"events": EVENT_PERSISTER},
            "worker_replication_secret": self._replication_secret,
        }
        self._main_log_config, self._main_log = self.files.log_files(MAIN)
        return self.files.write_homeserver_yaml(
            server_name=self.server_name,
            public_baseurl=self.client_url + "/",
            listeners=[
                hsconfig.http_listener(ports["main_client"], ["client"]),
                hsconfig.http_listener(ports["main_federation"], ["federation", "keys"], tls=True),
                hsconfig.http_listener(ports["main_replication"], ["replication"]),
                hsconfig.metrics_listener(self._metrics_ports[MAIN]),
            ],
            database=hsconfig.postgres_database(self.postgres, self.database_name),
            log_config_path=self._main_log_config,
            module_config=self.module_config,
            overrides=hsconfig.deep_merge(worker_settings, self.config_overrides),
        )

    def _processes(self) -> tuple[SynapseProcess, SynapseProcess, SynapseProcess]:
        main = SynapseProcess(
            MAIN,
            app=HOMESERVER_APP,
            config_paths=[self.config_path],
            workdir=self.directory,
            log_path=self._main_log,
            health_url=f"{self.main_client_url}/health",
            client_url=self.main_client_url,
        )
        persister = self._worker(
            EVENT_PERSISTER,
            [
                hsconfig.http_listener(self._ports["persister_replication"], ["replication"]),
                hsconfig.metrics_listener(self._metrics_ports[EVENT_PERSISTER]),
            ],
            # Its only HTTP listener is for replication; /health is on every one.
            health_url=f"{self.persister_replication_url}/health",
            client_url=None,
        )
        client_worker = self._worker(
            CLIENT_WORKER,
            [
                hsconfig.http_listener(self._ports["client_worker_client"], ["client"]),
                hsconfig.metrics_listener(self._metrics_ports[CLIENT_WORKER]),
            ],
            health_url=f"{self.client_url}/health",
            client_url=self.client_url,
        )
        return main, persister, client_worker

    def _worker(
        self,
        worker_name: str,
        listeners: list[JsonDict],
        *,
        health_url: str,
        client_url: str | None,
    ) -> SynapseProcess:
        worker_path, log_path = self.files.write_worker_yaml(worker_name, listeners)
        return SynapseProcess(
            worker_name,
            app=WORKER_APP,
            config_paths=[self.config_path, worker_path],
            workdir=self.directory,
            log_path=log_path,
            health_url=health_url,
            client_url=client_url,
        )

    def _ferry_worker(self, worker_name: str) -> SynapseProcess:
        port = free_port()
        # No client traffic goes to a ferry worker; the listener is for /health.
        return self._worker(
            worker_name,
            [
                hsconfig.http_listener(port, ["health"]),
                hsconfig.metrics_listener(self._metrics_ports[worker_name]),
            ],
            health_url=f"http://127.0.0.1:{port}/health",
            client_url=None,
        )

    def reconfigure(self, module_config: Mapping[str, Any]) -> None:
        """Rewrite the module's config; each process reads it when it next starts."""
        self.module_config = dict(module_config)
        self._write_shared_config()

    def __repr__(self) -> str:
        return f"<WorkerDeployment {self.server_name} client={self.client_url}>"

    # -- lifecycle -------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> WorkerDeployment:
        """Start main, then both workers together; return once all are healthy."""
        try:
            # The main process creates or upgrades the database schema; workers
            # refuse to start against a database it has not prepared.
            self.main.start(timeout)
            workers = [self.event_persister, self.client_worker, *self.ferry_worker_procs]
            for worker in workers:
                worker.spawn()
            for worker in workers:
                worker.wait_healthy(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30) -> None:
        # Workers first: stopping main first makes them log replication errors.
        for proc in (*self.ferry_worker_procs, self.client_worker, self.event_persister, self.main):
            proc.stop(timeout)

    # -- using it --------------------------------------------------------------

    def info(self, process: str = CLIENT_WORKER) -> JsonDict:
        """The module's info endpoint as served by ``process`` (main or client worker)."""
        url = self.processes[process].client_url
        if url is None:
            raise ValueError(f"{process} has no client listener")
        return MatrixClient(url).request("GET", INFO_PATH, authenticated=False)

    # -- diagnostics -----------------------------------------------------------

    def log_text(self, process: str) -> str:
        return self.processes[process].log_text()

    def log_tails(self, lines: int = 80) -> dict[str, str]:
        tails: dict[str, str] = {}
        for proc in self.processes.values():
            tails[f"{self.name}/{proc.name} log"] = tail_lines(proc.log_text(), lines)
            tails[f"{self.name}/{proc.name} stdout/stderr"] = tail_lines(
                proc.output_text(), lines // 4
            )
        return tails
