"""What is new in the homeserver's timeline, for the parts of the module that react.

Synapse's per-event module callbacks are not used: ``on_new_event`` and
``check_event_allowed`` make Synapse load the room's whole current state for
every event on the server, connected room or not, which cost a quarter of the
send rate in a room with 500 state events (docs/benchmarks.md). And
``on_new_event``'s dispatch first fetches the event, which raises for a
redaction of an event the server lacks and so aborts the notification before
the federation sender is poked: the redaction never leaves the server.

Instead the feed wakes on Synapse's replication notifier, which fires after
events are persisted (on workers too) and costs nothing per event, and reads
what is new since its last position in one query that returns just the
columns the module decides on; and not even that when Synapse's in-memory
stream caches show nothing it could care about. Only the acting process runs
it. A slow consumer does not slow Synapse: events that arrive while a read is
running are picked up by the next.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Final, Protocol

import attrs
from synapse.module_api import ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.store import NewEvent

logger = logging.getLogger(__name__)

BATCH_SIZE: Final = 500
RETRY_DELAY_MS: Final = 1000

Consumer = Callable[[Sequence[NewEvent]], Awaitable[None]]
# Whether any of these rooms is one where every new event matters to the
# consumer; elsewhere only changes of current state do (a connection event,
# an invite of the bot). Asked of the few rooms that changed, so its cost
# does not grow with the number of watched rooms.
Watched = Callable[[Collection[str]], bool]


class NewEventsReader(Protocol):
    async def new_events(self, after: int, upto: int, limit: int) -> list[NewEvent]: ...


class EventStream(Protocol):
    """What this process knows in memory about new events, without a read."""

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously) whenever new data may be persisted."""
        ...

    def current_position(self) -> int:
        """The newest stream position up to which everything is persisted."""
        ...

    def rooms_with_events_since(self, position: int) -> Collection[str] | None:
        """None when the cache does not reach back to ``position``."""
        ...

    def rooms_with_state_changes_since(self, position: int) -> Collection[str] | None:
        """None when the cache does not reach back to ``position``."""
        ...


class SynapseEventStream:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api

    def subscribe(self, callback: Callable[[], None]) -> None:
        synapse_compat.add_replication_callback(self._api, callback)

    def current_position(self) -> int:
        return synapse_compat.current_stream_position(self._api)

    def rooms_with_events_since(self, position: int) -> Collection[str] | None:
        return synapse_compat.rooms_with_events_since(self._api, position)

    def rooms_with_state_changes_since(self, position: int) -> Collection[str] | None:
        return synapse_compat.rooms_with_state_changes_since(self._api, position)


@attrs.define
class _State:
    position: int
    running: bool = False
    poked: bool = False


class Feed:
    def __init__(
        self,
        api: ModuleApi,
        store: NewEventsReader,
        consumer: Consumer,
        watched: Watched,
        stream: EventStream | None = None,
    ) -> None:
        self._api = api
        self._store = store
        self._consume = consumer
        self._watched = watched
        self._stream = stream if stream is not None else SynapseEventStream(api)
        self._state: _State | None = None

    def start(self) -> None:
        """Start from the current position: what was persisted before is the
        start-up reconciliation's business, as with any restart."""
        self._state = _State(position=self._stream.current_position())
        self._stream.subscribe(self.poke)

    def poke(self) -> None:
        """Called by Synapse for every replication notification: keep it cheap."""
        state = self._state
        if state is None:
            return
        state.poked = True
        if state.running:
            return
        upto = self._stream.current_position()
        if upto <= state.position:
            return
        if self._nothing_for_us(state.position):
            state.position = upto
            return
        state.running = True
        self._api.run_as_background_process("room_connect_feed", self._run, state)

    async def _run(self, state: _State) -> None:
        try:
            while state.poked:
                state.poked = False
                upto = self._stream.current_position()
                if self._nothing_for_us(state.position):
                    state.position = max(state.position, upto)
                while state.position < upto:
                    rows = await self._store.new_events(state.position, upto, BATCH_SIZE)
                    state.position = rows[-1].stream if len(rows) == BATCH_SIZE else upto
                    if rows:
                        await self._deliver(rows)
        except Exception:
            logger.exception("Reading new events failed; retrying in %d ms", RETRY_DELAY_MS)
            self._api.delayed_background_call(RETRY_DELAY_MS, self.poke, desc="room_connect_feed")
        finally:
            state.running = False

    def _nothing_for_us(self, position: int) -> bool:
        """Whether Synapse's in-memory stream caches already tell that nothing
        after ``position`` can matter: no room changed its current state, and
        no watched room has new events. This is what makes a message in a room
        without connections cost the module no database read at all."""
        changed = self._stream.rooms_with_events_since(position)
        if changed is None:
            return False  # the cache does not reach back that far: read
        state_changed = self._stream.rooms_with_state_changes_since(position)
        if state_changed is None or state_changed:
            return False
        return not self._watched(changed)

    async def _deliver(self, rows: Sequence[NewEvent]) -> None:
        # The consumer only queues work; if that fails for these rows, log and
        # go on, so one bad event cannot stop everything after it.
        try:
            await self._consume(rows)
        except Exception:
            logger.exception(
                "Handling new events %s..%s failed", rows[0].event_id, rows[-1].event_id
            )
