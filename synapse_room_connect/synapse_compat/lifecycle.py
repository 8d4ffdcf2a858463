"""The process's shutdown, which the module API does not announce."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi


def before_shutdown(api: ModuleApi, desc: str, func: Callable[[], Awaitable[None]]) -> None:
    """Run ``func`` when the process is asked to stop, before the database
    pool closes; the stop waits for it. On the reactor itself: Synapse's
    ``register_async_shutdown_handler`` starts a handler but does not make
    the stop wait for it. Checked against 1.150.0 and 1.163.2."""
    reactor: Any = api._hs.get_reactor()

    def trigger() -> Any:
        # A Deferred: the reactor waits for a "before" trigger's Deferred.
        return api.run_as_background_process(desc, func)

    reactor.addSystemEventTrigger("before", "shutdown", trigger)
