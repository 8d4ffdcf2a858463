"""The signal the coordinator raises after changing connections, heard everywhere."""

from __future__ import annotations

import functools
from typing import Any

from synapse_room_connect.ferry.replicated_signal import replicated_signal
from tests.unit.stand_ins import run_async


class Api:
    """ModuleApi's two methods, with Synapse's replication stood in for by a
    list of processes: each invalidation reaches every registered function."""

    def __init__(self, processes: list[dict[str, Any]], me: dict[str, Any]) -> None:
        self._processes = processes
        self._me = me
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def register_cached_function(self, cached_func: Any) -> None:
        self._me[f"{cached_func.__module__}.{cached_func.__name__}"] = cached_func

    async def invalidate_cache(self, cached_func: Any, keys: tuple[Any, ...]) -> None:
        name = f"{cached_func.__module__}.{cached_func.__name__}"
        self.sent.append((name, keys))
        for process in self._processes:
            if name in process:
                process[name].invalidate(keys)


@run_async
async def test_every_process_that_registered_hears_the_signal_once() -> None:
    processes: list[dict[str, Any]] = [{}, {}, {}]
    heard: list[str] = []
    apis = [Api(processes, p) for p in processes]
    raise_on = [
        replicated_signal(api, "room_connect_test", functools.partial(heard.append, f"p{n}"))
        for n, api in enumerate(apis)
    ]
    await raise_on[0]()
    assert sorted(heard) == ["p0", "p1", "p2"]
    assert apis[0].sent == [
        ("synapse_room_connect.ferry.replicated_signal.room_connect_test", ("room_connect_test",))
    ]


def test_a_full_cache_reset_is_heard_too() -> None:
    processes: list[dict[str, Any]] = [{}]
    heard: list[bool] = []
    replicated_signal(Api(processes, processes[0]), "reset", lambda: heard.append(True))
    next(iter(processes[0].values())).invalidate_all()
    assert heard == [True]
