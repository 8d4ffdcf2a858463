"""A signal one Synapse process raises and every process hears.

The sharded ferry needs it: the coordinator writes the connections cache,
and the other ferry processes must reload it afterwards. Their own feeds are
no help there, as they may read a connection event before the coordinator
has reconciled it. Synapse already carries exactly this kind of message to
every process: the invalidation of a cached function that a module
registered (``ModuleApi.register_cached_function`` and ``invalidate_cache``,
public since Synapse 1.69). It is streamed after the raiser's earlier writes
commit, and each process calls the registered object's ``invalidate``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class Replication(Protocol):
    """What this needs of ModuleApi."""

    def register_cached_function(self, cached_func: Any) -> None: ...

    async def invalidate_cache(self, cached_func: Any, keys: tuple[Any, ...]) -> None: ...


class _Signal:
    """What Synapse invalidates: a cached function with nothing cached."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.__name__ = name
        self._callback = callback

    def invalidate(self, keys: tuple[Any, ...]) -> None:
        self._callback()

    def invalidate_all(self) -> None:
        self._callback()


def replicated_signal(
    api: Replication, name: str, callback: Callable[[], None]
) -> Callable[[], Awaitable[None]]:
    """Register ``callback`` under ``name`` and return what raises it.

    Every process must register the same name at start-up to hear it; the
    raising process runs ``callback`` too. Raising it costs one write.
    """
    signal: Any = _Signal(name, callback)
    api.register_cached_function(signal)

    async def raise_signal() -> None:
        await api.invalidate_cache(signal, (name,))

    return raise_signal
