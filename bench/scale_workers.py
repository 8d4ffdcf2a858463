"""A worker deployment whose ferry runs on dedicated workers, for the scale benchmark.

The harness's ``WorkerDeployment`` (main, event persister, client worker) plus
one generic worker per name in ``ferry_workers``, named in the module's
``worker`` option: a string for one, a list for several (the sharded ferry).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema

from harness import config as hsconfig
from harness.ports import free_port
from harness.postgres import PostgresServer
from harness.process import DEFAULT_START_TIMEOUT, SynapseProcess
from harness.redis import RedisServer
from harness.workers import WorkerDeployment
from synapse_room_connect.config import parse_config

LIST_NOT_ACCEPTED = "skipped: module does not accept a list of ferry workers yet"


def accepts_worker_list() -> bool:
    """Whether this checkout's module takes a list of worker names for ``worker``."""
    try:
        parse_config({"worker": ["ferry1", "ferry2"]})
    except (jsonschema.ValidationError, TypeError, ValueError):
        return False
    return True


def worker_option(names: Sequence[str]) -> str | list[str]:
    return names[0] if len(names) == 1 else list(names)


class FerryWorkerDeployment(WorkerDeployment):
    """``WorkerDeployment`` with extra generic workers that only carry the ferry."""

    def __init__(
        self,
        postgres: PostgresServer,
        redis: RedisServer,
        ferry_workers: Sequence[str],
        *,
        base_dir: Path | None = None,
        name: str = "ferry-workers",
        config_overrides: dict[str, Any] | None = None,
    ) -> None:
        if not ferry_workers:
            raise ValueError("at least one ferry worker")
        super().__init__(
            postgres,
            redis,
            {"worker": worker_option(ferry_workers)},
            base_dir=base_dir,
            name=name,
            config_overrides=config_overrides,
        )
        self.ferry_processes: list[SynapseProcess] = []
        for worker_name in ferry_workers:
            port = free_port()
            # No client traffic goes to a ferry worker; the listener is for /health.
            process = self._worker(
                worker_name,
                [
                    hsconfig.http_listener(port, ["health"]),
                    hsconfig.metrics_listener(free_port()),
                ],
                health_url=f"http://127.0.0.1:{port}/health",
                client_url=None,
            )
            self.ferry_processes.append(process)
            self.processes[worker_name] = process

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> FerryWorkerDeployment:
        super().start(timeout)
        try:
            for process in self.ferry_processes:
                process.spawn()
            for process in self.ferry_processes:
                process.wait_healthy(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30) -> None:
        for process in self.ferry_processes:
            process.stop(timeout)
        super().stop(timeout)
