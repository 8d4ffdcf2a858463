"""The send-time guard: a bad connection event a local user sends is refused
with a clear error before it enters the room (any process that sends)."""

from __future__ import annotations

import logging
from typing import Literal

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_room_connect import metrics
from synapse_room_connect.bot import notices
from synapse_room_connect.connections.rooms import (
    RoomReader,
    StateMap,
    check_power,
    traits_from_state,
)
from synapse_room_connect.constants import CONNECTION_EVENT_TYPE
from synapse_room_connect.core.handshake import (
    ContentError,
    is_empty_content,
    traits_mismatch,
    validate_content,
)
from synapse_room_connect.core.matrix import unfreeze

logger = logging.getLogger(__name__)


@attrs.define
class ConnectionEventGuard:
    _api: ModuleApi
    _reader: RoomReader
    _bot_user_id: str
    # approve_power_level: what changing a room's connections needs.
    _threshold: int
    # limits.connections_per_room
    _limit: int

    async def check_event_for_spam(self, event: EventBase) -> Literal["NOT_SPAM"]:
        """Refuse a bad connection event a local user sends, with a clear error.

        Synapse calls this before persisting a local user's event; raising
        (rather than returning an error code) keeps the status and message of
        the SynapseError. Remote events are never refused here: rejecting
        them would fork our view of the room. They are judged (and ignored)
        when deriving status.
        """
        if event.type != CONNECTION_EVENT_TYPE or not event.is_state():
            return "NOT_SPAM"
        if not self._api.is_mine(event.sender):
            return "NOT_SPAM"
        # The state the event is about to be added to; connection events are
        # rare, so reading it whole here costs nothing that matters.
        state = await self._api.get_room_state(event.room_id)
        try:
            self.check_local_event(event, state)
            await self.check_mismatch(event, state)
        except SynapseError as e:
            # errcode is a str-valued enum member; label with its value.
            errcode = str(getattr(e.errcode, "value", e.errcode))
            metrics.refused_connection_events.labels(self._api.server_name, errcode).inc()
            logger.info(
                "Refused connection event from %s in %s: %s", event.sender, event.room_id, e.msg
            )
            raise
        return "NOT_SPAM"

    def check_local_event(self, event: EventBase, state: StateMap) -> None:
        """Refuse a locally sent connection event that must not enter the room.

        Raises ``SynapseError`` with M_FORBIDDEN or M_BAD_JSON; the client sees
        it as the answer to its send.
        """
        state_key = event.state_key
        assert state_key is not None
        check_power(state, event.sender, self._threshold)
        content = unfreeze(event.content)
        if is_empty_content(content):
            return
        try:
            validate_content(content, room_id=event.room_id, state_key=state_key)
        except ContentError as e:
            raise SynapseError(400, f"Invalid connection: {e}", Codes.BAD_JSON) from None
        ferry = content["ferry"]
        if ferry != self._bot_user_id:
            member = state.get(("m.room.member", ferry))
            if member is None or member.content.get("membership") != "join":
                raise SynapseError(
                    403,
                    f"ferry {ferry} is neither this server's ferry bot ({self._bot_user_id}) "
                    "nor a bot joined to this room; invite and join it first.",
                    Codes.FORBIDDEN,
                )
        existing = [
            key
            for (etype, key), ev in state.items()
            if etype == CONNECTION_EVENT_TYPE
            and key != state_key
            and not is_empty_content(ev.content)
        ]
        if len(existing) >= self._limit:
            raise SynapseError(
                403,
                f"This room already has {len(existing)} connections; the limit is {self._limit}.",
                Codes.FORBIDDEN,
            )

    async def check_mismatch(self, event: EventBase, state: StateMap) -> None:
        """The mismatch guard, for when the other room's state is readable."""
        if is_empty_content(event.content):
            return
        assert event.state_key is not None
        there = await self._reader.traits(event.state_key)
        if there is None:
            return
        here = traits_from_state(state)
        acks = set(event.content.get("acknowledge", ()))
        missing = [ack for ack in traits_mismatch(here, there) if ack not in acks]
        if missing:
            raise SynapseError(403, notices.mismatch_refused(missing), Codes.FORBIDDEN)
