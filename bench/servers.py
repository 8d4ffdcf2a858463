"""What the benchmarks share: the two Synapse servers they compare, one loading the
module and one without it, and the little they need to talk to them.

Imported by the benchmark scripts once they have put the repository root on
``sys.path`` (the harness lives at its root).
"""

from __future__ import annotations

import traceback
import urllib.parse
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from harness.synapse import Homeserver

CLIENT_V3: Final = "/_matrix/client/v3"


class BenchError(RuntimeError):
    """Something went wrong that makes the run's figures meaningless."""


def q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def create_pair(
    base_dir: Path,
    servers: list[Homeserver],
    *,
    names: tuple[str, str],
    config_overrides: Mapping[str, Any],
) -> tuple[Homeserver, Homeserver]:
    """A homeserver with the module and one without it (``"modules": []``), both
    with ``config_overrides``, not yet started; ``servers`` collects each as soon
    as it exists, for clean-up."""
    with_module = Homeserver(base_dir, name=names[0], config_overrides=config_overrides)
    servers.append(with_module)
    without_module = Homeserver(
        base_dir, name=names[1], config_overrides={**config_overrides, "modules": []}
    )
    servers.append(without_module)
    return with_module, without_module


def destroy_all(servers: Sequence[Homeserver]) -> None:
    """Stop and remove every server, all at once: each waits for its own
    process to exit. A failure is printed and does not keep the others."""
    if not servers:
        return
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        futures = [pool.submit(hs.destroy) for hs in servers]
    for future in futures:
        error = future.exception()
        if error is not None:
            traceback.print_exception(error)
