"""Reading what a room's current state says, as handshake values."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_room_connect import metrics, synapse_compat
from synapse_room_connect.bot import notices
from synapse_room_connect.constants import CONNECTION_EVENT_TYPE, TRAIT_EVENT_TYPES
from synapse_room_connect.core.ghosts import Senders
from synapse_room_connect.core.handshake import (
    Consent,
    ContentError,
    RoomTraits,
    Side,
    is_empty_content,
    validate_content,
)
from synapse_room_connect.core.matrix import unfreeze
from synapse_room_connect.core.upgrades import Link, predecessor_in, replacement_in

logger = logging.getLogger(__name__)

StateMap = Mapping[tuple[str, str], EventBase]

_TRAIT_STATE: Final = tuple((etype, "") for etype in sorted(TRAIT_EVENT_TYPES))
_LINK_STATE: Final = (("m.room.tombstone", ""), ("m.room.create", ""))


def traits_from_state(state: StateMap) -> RoomTraits:
    join_rules = state.get(("m.room.join_rules", ""))
    history = state.get(("m.room.history_visibility", ""))
    return RoomTraits(
        encrypted=("m.room.encryption", "") in state,
        public=(join_rules is not None and join_rules.content.get("join_rule") == "public")
        or (history is not None and history.content.get("history_visibility") == "world_readable"),
    )


class RoomReader:
    """Turns current room state into ``Side`` and ``RoomTraits`` values."""

    def __init__(self, api: ModuleApi, approve_power_level: int) -> None:
        self._api = api
        self._threshold = approve_power_level

    async def visible(self, room_id: str) -> bool:
        return await synapse_compat.server_in_room(self._api, room_id)

    async def connection_events(self, room_id: str) -> dict[str, EventBase]:
        """Every connection state event in ``room_id``, keyed by the other room."""
        state = await self._api.get_room_state(room_id, [(CONNECTION_EVENT_TYPE, None)])
        return {key: event for (_, key), event in state.items()}

    async def traits(self, room_id: str) -> RoomTraits | None:
        if not await self.visible(room_id):
            return None
        return traits_from_state(await self._api.get_room_state(room_id, _TRAIT_STATE))

    async def side(self, room_id: str, other_room_id: str) -> Side:
        if not await self.visible(room_id):
            return Side(room_id, visible=False)
        state = await self._api.get_room_state(room_id, [(CONNECTION_EVENT_TYPE, other_room_id)])
        event = state.get((CONNECTION_EVENT_TYPE, other_room_id))
        if event is None:
            return Side(room_id)
        return await self.side_from_event(event)

    async def side_from_event(self, event: EventBase) -> Side:
        room_id, other_room_id = event.room_id, event.state_key
        assert other_room_id is not None
        # Events are frozen (tuples, immutabledicts); the rules take plain JSON.
        content = unfreeze(event.content)
        if is_empty_content(content):
            return Side(room_id, withdrawn=True)
        try:
            validate_content(content, room_id=room_id, state_key=other_room_id)
        except ContentError as e:
            # Fail closed: a malformed event is no consent, whoever sent it.
            metrics.ignored_connection_events.labels(self._api.server_name, "malformed").inc()
            logger.warning(
                "Ignoring malformed connection event %s in %s from %s: %s",
                event.event_id,
                room_id,
                event.sender,
                e,
            )
            return Side(room_id)
        power = await synapse_compat.sender_power_at_event(self._api, event)
        if power < self._threshold:
            metrics.ignored_connection_events.labels(self._api.server_name, "power").inc()
            logger.warning(
                "Ignoring connection event %s in %s: sender %s had power level %d < %d",
                event.event_id,
                room_id,
                event.sender,
                power,
                self._threshold,
            )
            return Side(room_id)
        return Side(
            room_id,
            consent=Consent(
                room_id=room_id,
                other_room_id=other_room_id,
                via=tuple(content["via"]),
                ferry=content["ferry"],
                acknowledge=frozenset(content.get("acknowledge", ())),
                sender=event.sender,
                event_id=event.event_id,
                senders=Senders(content["senders"]) if "senders" in content else None,
            ),
        )

    async def link(self, room_id: str) -> Link:
        """What the room's state says about upgrades (nothing if we cannot see it)."""
        if not await self.visible(room_id):
            return Link(room_id)
        state = await self._api.get_room_state(room_id, _LINK_STATE)
        tombstone = state.get(("m.room.tombstone", ""))
        create = state.get(("m.room.create", ""))
        return Link(
            room_id,
            replacement=None if tombstone is None else replacement_in(tombstone.content),
            predecessor=None if create is None else predecessor_in(create.content),
            tombstone_sender=None if tombstone is None else tombstone.sender,
        )


def check_power(state: Mapping[tuple[str, str], EventBase], user_id: str, threshold: int) -> None:
    """Refuse ``user_id`` unless ``state`` gives them ``threshold`` power."""
    power = synapse_compat.power_in_state(dict(state), user_id)
    if power < threshold:
        raise SynapseError(403, notices.power_too_low(threshold, user_id, power), Codes.FORBIDDEN)
