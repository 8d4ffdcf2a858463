"""What the benchmarks share: the two Synapse servers they compare, one loading the
module and one without it, and the little they need to talk to them.

Imported by the benchmark scripts once they have put the repository root on
``sys.path`` (the harness lives at its root).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import traceback
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, Final

from harness.client import JsonDict
from harness.process import KEEP_DIRS_ENV, remove_dir
from harness.synapse import Homeserver

CLIENT_V3: Final = "/_matrix/client/v3"


class BenchError(RuntimeError):
    """Something went wrong that makes the run's figures meaningless."""


def q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def quiet_sync_filter(room: JsonDict) -> JsonDict:
    """A /sync filter with the room filter ``room`` and none of what would only
    add load or noise to a measurement: no presence, no account data, and no
    ephemeral events (receipts, typing) in the rooms."""

    def none() -> JsonDict:
        return {"not_types": ["*"]}

    return {
        "room": {**room, "ephemeral": none(), "account_data": none()},
        "presence": none(),
        "account_data": none(),
    }


def create_pair(
    base_dir: Path,
    servers: list[Homeserver],
    *,
    names: tuple[str, str],
    config_overrides: Mapping[str, Any],
    module_config: Mapping[str, Any] | None = None,
) -> tuple[Homeserver, Homeserver]:
    """A homeserver with the module (configured with ``module_config``) and
    one without it (``"modules": []``), both with ``config_overrides``, not
    yet started; ``servers`` collects each as soon as it exists, for clean-up."""
    with_module = Homeserver(
        base_dir, name=names[0], config_overrides=config_overrides, module_config=module_config
    )
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


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind through the run's finally blocks, which stop the servers and remove their files.
    raise SystemExit(128 + signum)


def run_script(body: Callable[[], int], *, failure: str = "benchmark failed") -> int:
    """A benchmark's ``main``: runs ``body`` and returns its exit status. A run
    stopped from outside (a CI timeout's SIGTERM) still stops its servers and
    removes its directory; an exception is printed, with ``failure``, as status 1."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return body()
    except Exception:
        traceback.print_exc()
        print(failure, file=sys.stderr, flush=True)
        return 1


def make_run_dir(prefix: str, *, keep: bool) -> Path:
    """A fresh directory for the run's servers; with ``keep``, the harness keeps
    each server's directory (and ``remove_run_dir`` says where they are)."""
    if keep:
        os.environ[KEEP_DIRS_ENV] = "1"
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_run_dir(base_dir: Path, *, keep: bool, print_line: Callable[[str], None]) -> None:
    if keep:
        print_line(f"kept server directories in {base_dir}")
    remove_dir(base_dir)
