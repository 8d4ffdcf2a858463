"""The entry point Synapse loads: builds the parts, registers callbacks and HTTP."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from synapse.module_api import ModuleApi

from synapse_room_connect import __version__, synapse_compat
from synapse_room_connect.bot.ferry_bot import FerryBot
from synapse_room_connect.bot.ghosts import GhostGuard
from synapse_room_connect.bot.room_names import room_address, room_label
from synapse_room_connect.commands.queue import CommandQueue
from synapse_room_connect.commands.runner import CommandRunner
from synapse_room_connect.config import RoomConnectConfig, parse_config
from synapse_room_connect.connections.actions import ConnectionActions
from synapse_room_connect.connections.delivery import RequestDelivery
from synapse_room_connect.connections.guard import ConnectionEventGuard
from synapse_room_connect.connections.reconcile import Reconciler
from synapse_room_connect.connections.request_announcements import RequestAnnouncements
from synapse_room_connect.connections.rooms import RoomReader
from synapse_room_connect.connections.status import ConnectionStatus, activation_position
from synapse_room_connect.connections.upgrade_follow import UpgradeFollower
from synapse_room_connect.constants import HTTP_ROOT
from synapse_room_connect.core.sharding import instance_name
from synapse_room_connect.expansion.expander import Expander
from synapse_room_connect.feed import Feed
from synapse_room_connect.ferry.replicated_signal import replicated_signal
from synapse_room_connect.ferry.runner import FerryRunner
from synapse_room_connect.rest.admin import build_admin_routes
from synapse_room_connect.rest.client import RoomConnectResource
from synapse_room_connect.router import EventRouter
from synapse_room_connect.store import Store

logger = logging.getLogger(__name__)


class RoomConnectModule:
    def __init__(self, config: RoomConnectConfig, api: ModuleApi) -> None:
        synapse_compat.require_supported_synapse(api)
        self._api = api
        self._store = Store(api)
        bot = FerryBot(api, config.bot_localpart, config.bot_displayname)
        self._bot = bot
        label = functools.partial(room_label, api)
        level = config.approve_power_level
        reader = RoomReader(api, level)
        status = ConnectionStatus(reader, self._store)
        actions = ConnectionActions(api, reader, status, bot, level)
        room_address_of = functools.partial(room_address, api)
        instances = config.ferry_instances
        self._instances = instances
        # Every listed process ferries its share; the first alone also
        # reconciles, accepts invites and answers commands (core/sharding.py).
        self._is_acting_process = instances.is_coordinator(api.worker_name)
        self._ferries = instances.ferries(api.worker_name)
        self._ferry = FerryRunner(
            api,
            config,
            self._store,
            bot,
            reader,
            room_address_of,
            owns=functools.partial(instances.owns, api.worker_name),
        )
        self._ferry_started = False
        # Registered on every process, or replication would not reach it.
        self._announce_connections_changed = replicated_signal(
            api, "room_connect_connections_changed", self._on_connections_announced
        )
        self._reconciler = Reconciler(
            api,
            self._store,
            reader,
            bot,
            label=label,
            activation_position=functools.partial(activation_position, api),
            on_connections_changed=self._connections_changed,
            approve_power_level=level,
            upgrades=UpgradeFollower(api, reader, bot, label),
            request_notice=RequestDelivery(api, bot.user_id).requested_notice,
            address=room_address_of,
            announcements=RequestAnnouncements(api, bot.user_id),
            ghosts_leave=self._ferry.ghosts.leave,
        )
        fetch_events = functools.partial(synapse_compat.get_events, api)
        self._commands = CommandQueue(
            api,
            self._store,
            CommandRunner(api, bot, actions, label, level),
            fetch_events,
            bot.user_id,
            is_ghost=self._ferry.ghosts.is_ghost,
        )
        if self._is_acting_process:
            # A stop right after an answer would otherwise answer it again.
            synapse_compat.before_shutdown(
                api, "room_connect_finish_commands", self._commands.finish
            )
        self._router = EventRouter(
            api,
            bot,
            self._ferry.scheduler,
            self._reconciler,
            self._commands,
            fetch_events,
            coordinator=self._is_acting_process,
            is_ghost=self._ferry.ghosts.is_ghost,
            person_changed=self._ferry.ghosts.person_changed,
        )

        expander = Expander(
            api, self._store, config.ferry_state_events, ghosts=self._ferry.ghosts.namespace
        )
        admin_routes = build_admin_routes(api, self._store, bot, actions, level)
        api.register_web_resource(
            HTTP_ROOT,
            RoomConnectResource(
                api, self._store, bot.user_id, actions, expander, admin_routes, __version__
            ),
        )
        api.register_add_extra_fields_to_unsigned_client_event_callbacks(
            add_field_to_unsigned_callback=expander.unsigned_for
        )
        guard = ConnectionEventGuard(
            api, reader, bot.user_id, level, config.limits.connections_per_room
        )
        # Validation of connection events: this hook gets the event alone,
        # where check_event_allowed would make Synapse load the room's whole
        # state for every event on the server. Invites from other servers
        # arrive as outliers, which the feed never sees; the second hook does.
        # The ghost namespace is the module's: nobody registers or logs in
        # there, and ghosts stay out of user directory searches.
        ghost_guard = GhostGuard(self._ferry.ghosts.namespace)
        api.register_spam_checker_callbacks(
            check_event_for_spam=guard.check_event_for_spam,
            federated_user_may_invite=self._router.on_federated_invite,
            check_registration_for_spam=ghost_guard.check_registration_for_spam,
            check_login_for_spam=ghost_guard.check_login_for_spam,
            check_username_for_spam=ghost_guard.check_username_for_spam,
        )
        # The feed stands in for on_new_event; see feed.py for why.
        self._feed = Feed(api, self._store, self._router.on_new_events, self._router.watches_any)
        # Migrate as soon as the reactor runs, so a broken database shows up in
        # the log at start-up rather than on the first connection.
        api.delayed_background_call(0, self._start, desc="room_connect_start")
        logger.info(
            "synapse_room_connect loaded: bot %s, ferry on %s, coordinator %s (this is %s)",
            bot.user_id,
            ", ".join(instances.names),
            instances.coordinator,
            instance_name(api.worker_name),
        )

    @staticmethod
    def parse_config(config: Mapping[str, Any] | None) -> RoomConnectConfig:
        return parse_config(config)

    async def _start(self) -> None:
        await self._store.migrate()
        if self._is_acting_process:
            await self._router.start()
            # Read right before the feed starts, with no wait between: the
            # catch-up answers commands up to here, the feed those after.
            self._commands.begin(synapse_compat.current_stream_position(self._api))
            self._feed.start()
            await self._commands.catch_up()
            # Catch up on anything that changed while this process was down.
            await self._reconciler.reconcile_all()
        elif self._ferries:
            self._feed.start()
        if self._ferries:
            # Resume ferrying from each room's cursor: whatever was persisted
            # while this process was down (or mid-crash) goes out now.
            self._ferry_started = True
            self._ferry.wake()

    def _connections_changed(self) -> None:
        """The coordinator changed the connections cache (connections/reconcile.py)."""
        self._ferry.scheduler.connections_changed()
        if self._instances.sharded:
            # The other ferry processes cannot see this process's memory, and
            # their feeds may read the connection event before the cache row
            # is written; this signal is sent after that write commits.
            self._api.run_as_background_process(
                "room_connect_announce_connections", self._announce_connections_changed
            )

    def _on_connections_announced(self) -> None:
        """On every process: some process changed the connections cache."""
        if self._ferry_started:
            self._ferry.scheduler.connections_changed()
