"""The ferry over Synapse: builds its parts, runs its passes in the
background, and gives the batches Synapse's events and the bot's sends.

The parts, one job each:

- ``scheduler``: what to read next (dirty rooms, directions), and a pass;
- ``crossing``: whether an event crosses into a target room;
- ``prepare``: one original's counterpart for one target room, rendered by
  ``pointers``, its mentions read by ``counterpart_mentions``, a withdrawn
  reaction weighed by ``reaction_count``;
- ``batch``: sending counterparts together, exactly once, and recording them;
  ``held`` keeps the events waiting for a relation's counterpart, and
  ``attempts`` counts failures until an event is given up;
- ``cursors``: how far each direction is recorded (the one copy in memory);
- ``lease``: which process may send for a connection right now;
- ``interfaces``: the protocols and records between them.

The router tells the scheduler which rooms have new events and
reconciliation tells it of connection changes; the scheduler asks the
runner for a pass, which the runner runs when none is running.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Final

from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.bot.ferry_bot import FerryBot
from synapse_room_connect.bot.ghosts import Ghosts
from synapse_room_connect.config import RoomConnectConfig
from synapse_room_connect.connections.rooms import RoomReader
from synapse_room_connect.connections.status import activation_position
from synapse_room_connect.core.ghosts import GhostNamespace
from synapse_room_connect.ferry.batch import BatchSender
from synapse_room_connect.ferry.crossing import (
    Crossing,
    CurrentStateGate,
    TargetModeration,
    is_carried,
)
from synapse_room_connect.ferry.cursors import DirectionCursors
from synapse_room_connect.ferry.interfaces import Outgoing
from synapse_room_connect.ferry.lease import FerryLeases, LeaseLostError, lease_owner
from synapse_room_connect.ferry.prepare import CounterpartPreparer
from synapse_room_connect.ferry.scheduler import FerryScheduler, PassOutcome
from synapse_room_connect.store import Store

logger = logging.getLogger(__name__)

RETRY_DELAY_MS: Final = 1000
FERRY_DEVICE_ID: Final = "MSC2923FERRY"


class SynapseEvents:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api

    async def get_event(self, event_id: str) -> EventBase | None:
        return await synapse_compat.get_event(self._api, event_id)


class CounterpartSender:
    """Sends each counterpart as its sender (the ferry bot, or an author's
    ghost) on the ferry's device, so Synapse keeps each transaction ID with
    its event and a resend after a crash can be answered from it."""

    def __init__(self, api: ModuleApi, store: Store, user_id: str, device_id: str) -> None:
        self._api = api
        self._store = store
        self._user_id = user_id
        self._device_id = device_id

    async def already_sent(
        self, wanted: Collection[tuple[str, str, str | None]]
    ) -> dict[tuple[str, str], str]:
        triples = [(room, txn_id, sender or self._user_id) for room, txn_id, sender in wanted]
        return await self._store.sent_transactions(self._device_id, triples)

    async def send(self, chains: Mapping[str, Sequence[Outgoing]]) -> dict[str, Exception | None]:
        events = {
            room_id: [
                (i.txn_id, i.counterpart.event_dict(room_id, i.counterpart.sender or self._user_id))
                for i in items
            ]
            for room_id, items in chains.items()
        }
        return await synapse_compat.send_chains(self._api, self._user_id, self._device_id, events)


class FerryRunner:
    """Runs the scheduler's passes in a background process, one at a time:
    again at once while there is more to read, after a delay when a send
    failed, and never while the bot's device is missing."""

    def __init__(
        self,
        api: ModuleApi,
        config: RoomConnectConfig,
        store: Store,
        bot: FerryBot,
        reader: RoomReader,
        room_address: Callable[[str], Awaitable[str]],
        owns: Callable[[str, str], bool] = lambda _a, _b: True,
    ) -> None:
        self._api = api
        self._bot = bot
        namespace = GhostNamespace(config.ghost_localpart_prefix, api.server_name)
        self.ghosts = Ghosts(api, store, bot, namespace, FERRY_DEVICE_ID)
        cursors = DirectionCursors()
        leases = FerryLeases(store, lease_owner(api.worker_name), sleep=api.sleep)
        # Whoever takes this process's connections over need not wait for
        # its leases to expire after a clean stop.
        synapse_compat.before_shutdown(api, "room_connect_release_leases", leases.close)
        crossing = Crossing(
            functools.partial(is_carried, config, bot.user_id, is_ghost=namespace.contains),
            reader,
            TargetModeration(api),
            CurrentStateGate(reader, functools.partial(activation_position, api), bot.user_id),
        )
        batches = BatchSender(
            events=SynapseEvents(api),
            preparer=CounterpartPreparer(
                api, config, store, bot.user_id, room_address, ghosts=self.ghosts
            ),
            crossing=crossing,
            sender=CounterpartSender(api, store, bot.user_id, FERRY_DEVICE_ID),
            records=store,
            cursors=cursors,
            server_name=api.server_name,
            clock_ms=api.get_current_time_msec,
            leases=leases,
        )
        self.scheduler = FerryScheduler(
            store,
            crossing,
            batches,
            cursors,
            bot.user_id,
            api.server_name,
            owns=owns,
            on_work=self.wake,
            leases=leases,
            default_senders=config.senders,
            ghosts_like=namespace.like_pattern(),
        )
        self._running = False
        self._woken = False
        self._device_ready = False

    def wake(self) -> None:
        """Make sure a pass runs after now; cheap enough for every new event."""
        self._woken = True
        if not self._running:
            self._running = True
            self._api.run_as_background_process("room_connect_ferry", self._run)

    async def _run(self) -> None:
        try:
            if not self._device_ready:
                await self._bot.ensure_registered()
                await synapse_compat.ensure_device(
                    self._api, self._bot.user_id, FERRY_DEVICE_ID, "MSC2923 ferry"
                )
                self._device_ready = True
            while True:
                self._woken = False
                outcome = await self.scheduler.run_pass(self._stream_position)
                if outcome is PassOutcome.RETRY_LATER:
                    self._retry_later()
                # No await between this check and returning, so a wake() can
                # not slip in unnoticed.
                if outcome is not PassOutcome.MORE and not self._woken:
                    return
        except LeaseLostError as e:
            logger.warning("Ferry pass stopped: %s; retrying in %d ms", e, RETRY_DELAY_MS)
            self._retry_later()
        except Exception:
            # The scheduler keeps the failed pass's rooms dirty.
            logger.exception("Ferry pass failed; retrying in %d ms", RETRY_DELAY_MS)
            self._retry_later()
        finally:
            self._running = False

    def _stream_position(self) -> int:
        return synapse_compat.current_stream_position(self._api)

    def _retry_later(self) -> None:
        self._api.delayed_background_call(
            RETRY_DELAY_MS, self.wake, desc="room_connect_ferry_retry"
        )
