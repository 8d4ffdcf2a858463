"""The ferry: reads connected rooms' timelines and sends pointer events.

This file wires the parts and runs them in the background; the feed
(``feed.py``) only wakes it. The parts, one job each:

- ``ferry_scheduler``: what to read next (dirty rooms, cursors), a pass.
- ``ferry_batch``: collecting counterparts and sending them, exactly once.
- ``ferry_prepare``: one original's counterpart for one target room.
- ``ferry_moderation``: the target room's bans and server ACL.
- ``ferry_fence``: what crosses after a connection change not yet reconciled.
- ``ferry_lease``: which process may send for a connection right now.
- ``ferry_interfaces``: the protocols between them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from synapse.module_api import ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.bot import FerryBot
from synapse_room_connect.config import RoomConnectConfig
from synapse_room_connect.ferry_batch import BatchSender
from synapse_room_connect.ferry_fence import CurrentStateGate
from synapse_room_connect.ferry_lease import FerryLeases, LeaseLostError, lease_owner
from synapse_room_connect.ferry_moderation import TargetModeration
from synapse_room_connect.ferry_prepare import CounterpartPreparer
from synapse_room_connect.ferry_scheduler import FerryScheduler, PassOutcome
from synapse_room_connect.ferry_synapse import BotSender, SynapseEvents
from synapse_room_connect.reconcile import activation_position
from synapse_room_connect.rooms import RoomReader
from synapse_room_connect.store import Store

logger = logging.getLogger(__name__)

RETRY_DELAY_MS: Final = 1000
FERRY_DEVICE_ID: Final = "MSC2923FERRY"


class Ferry:
    def __init__(
        self,
        api: ModuleApi,
        config: RoomConnectConfig,
        store: Store,
        bot: FerryBot,
        reader: RoomReader,
        label: Callable[[str], Awaitable[str]],
        owns: Callable[[str, str], bool] = lambda _a, _b: True,
    ) -> None:
        self._api = api
        self._bot = bot
        self._preparer = CounterpartPreparer(api, config, store, bot.user_id, label)
        leases = FerryLeases(store, lease_owner(api.worker_name), sleep=api.sleep)
        # Whoever takes this process's connections over need not wait for
        # its leases to expire after a clean stop.
        synapse_compat.before_shutdown(api, "room_connect_release_leases", leases.close)
        batches = BatchSender(
            events=SynapseEvents(api),
            preparer=self._preparer,
            moderation=TargetModeration(api),
            sender=BotSender(api, store, bot.user_id, FERRY_DEVICE_ID),
            records=store,
            server_name=api.server_name,
            clock_ms=api.get_current_time_msec,
            leases=leases,
        )
        fences = CurrentStateGate(reader, functools.partial(activation_position, api), bot.user_id)
        self._scheduler = FerryScheduler(
            store,
            reader,
            batches,
            bot.user_id,
            api.server_name,
            owns=owns,
            fences=fences,
            leases=leases,
        )
        self._running = False
        self._woken = False
        self._device_ready = False

    @property
    def active_rooms(self) -> frozenset[str]:
        """Source rooms with an active connection, as of the last pass."""
        return self._scheduler.active_rooms

    def connections_changed(self) -> None:
        self._scheduler.connections_changed()
        self.wake()

    def events_in(self, room_ids: Iterable[str]) -> None:
        """New events were persisted in these rooms."""
        if self._scheduler.events_in(room_ids):
            self.wake()

    async def map_event(self, event_id: str, target: str) -> str | None:
        """The counterpart in ``target`` of an event of a connected room."""
        return await self._preparer.map_event(event_id, target)

    def wake(self) -> None:
        """Make sure a pass runs after now; cheap enough for the feed."""
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
                upto = synapse_compat.current_stream_position(self._api)
                outcome = await self._scheduler.run_pass(upto)
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

    def _retry_later(self) -> None:
        self._api.delayed_background_call(
            RETRY_DELAY_MS, self.wake, desc="room_connect_ferry_retry"
        )
