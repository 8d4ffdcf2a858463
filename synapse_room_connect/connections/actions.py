"""Actions a local room admin takes on a connection, shared by REST and chat.

Every action ends in a connection state event sent as the acting admin; what
follows from it (bot joins, notices, the status cache) is connections/reconcile.py's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
from synapse.module_api import EventBase, ModuleApi, RoomID
from synapse.module_api.errors import Codes, SynapseError

from synapse_room_connect import synapse_compat
from synapse_room_connect.bot import notices
from synapse_room_connect.bot.ferry_bot import FerryBot
from synapse_room_connect.bot.notices import Misread
from synapse_room_connect.connections.power_refusal import power_refusal
from synapse_room_connect.connections.rooms import RoomReader
from synapse_room_connect.connections.status import ConnectionStatus, ConnectionView
from synapse_room_connect.constants import ACK_ENCRYPTION, ACK_VISIBILITY, CONNECTION_EVENT_TYPE
from synapse_room_connect.core.ghosts import Senders
from synapse_room_connect.core.handshake import Status, is_empty_content
from synapse_room_connect.core.matrix import server_of


# The body of a connect request, as the room admin's and the homeserver
# admin's REST endpoints both take it; the request action's arguments.
@attrs.frozen
class ConnectBody:
    room: str
    via: tuple[str, ...] = ()
    acknowledge: tuple[str, ...] = ()
    # Who sends what crosses into this room; None: the ferrying server's default.
    senders: Senders | None = None


def parse_connect_body(body: dict[str, Any]) -> ConnectBody:
    """Check ``{"room", "via"?, "acknowledge"?, "senders"?}``; a 400 naming
    the bad key otherwise."""
    room = body.get("room")
    if not isinstance(room, str) or not room:
        raise SynapseError(400, "'room' must be a room alias or room ID", Codes.BAD_JSON)
    via = body.get("via", [])
    if not isinstance(via, list) or not all(isinstance(s, str) and s for s in via):
        raise SynapseError(400, "'via' must be a list of server names", Codes.BAD_JSON)
    acknowledge = body.get("acknowledge", [])
    # Compare item by item: a set of the items would raise on a nested list.
    if not isinstance(acknowledge, list) or not all(
        a in (ACK_ENCRYPTION, ACK_VISIBILITY) for a in acknowledge
    ):
        raise SynapseError(
            400,
            f"'acknowledge' must be a list of {ACK_ENCRYPTION!r} and/or {ACK_VISIBILITY!r}",
            Codes.BAD_JSON,
        )
    senders = body.get("senders")
    if senders is not None and senders not in [s.value for s in Senders]:
        choices = " or ".join(repr(s.value) for s in Senders)
        raise SynapseError(400, f"'senders' must be {choices}", Codes.BAD_JSON)
    return ConnectBody(
        room, tuple(via), tuple(acknowledge), None if senders is None else Senders(senders)
    )


def _require_joined(state: Mapping[tuple[str, str], EventBase], room_id: str, user_id: str) -> None:
    member = state.get(("m.room.member", user_id))
    if member is None or member.content.get("membership") != "join":
        raise SynapseError(403, notices.not_joined(user_id, room_id), Codes.FORBIDDEN)


@attrs.define
class ConnectionActions:
    _api: ModuleApi
    _reader: RoomReader
    _status: ConnectionStatus
    _bot: FerryBot
    # approve_power_level: what requesting, approving and revoking need.
    _threshold: int

    async def require_power(self, room_id: str, user_id: str) -> None:
        state = await self._api.get_room_state(
            room_id,
            [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", user_id)],
        )
        _require_joined(state, room_id, user_id)
        power = synapse_compat.power_in_state(dict(state), user_id)
        if power < self._threshold:
            text = await power_refusal(self._api, room_id, user_id, power, self._threshold)
            raise SynapseError(403, text, Codes.FORBIDDEN)

    async def require_member(self, room_id: str, user_id: str) -> None:
        state = await self._api.get_room_state(room_id, [("m.room.member", user_id)])
        _require_joined(state, room_id, user_id)

    async def list_for(self, room_id: str) -> list[ConnectionView]:
        return await self._status.list_for(room_id)

    async def resolve_room(self, ref: str, via: Sequence[str] = ()) -> tuple[str, list[str]]:
        """A room ID and servers to reach it, from an alias or a room ID."""
        if ref.startswith("#"):
            try:
                room_id, servers = await self._api.lookup_room_alias(ref)
            except SynapseError as e:
                raise SynapseError(
                    404, notices.alias_unresolved(ref, e.msg), Codes.NOT_FOUND
                ) from None
            return room_id, list(dict.fromkeys([*via, *servers]))
        if not RoomID.is_valid(ref):
            raise SynapseError(400, notices.misread(Misread.NOT_A_ROOM, ref), Codes.INVALID_PARAM)
        servers = list(via)
        if not servers:
            domain = server_of(ref)
            if domain:
                servers.append(domain)
            elif await self._reader.visible(ref):
                servers.append(self._api.server_name)
        if not servers:
            raise SynapseError(400, notices.servers_needed(ref), Codes.INVALID_PARAM)
        return ref, servers

    async def request(
        self,
        user_id: str,
        room_id: str,
        other_ref: str,
        via: Sequence[str] = (),
        acknowledge: Iterable[str] = (),
        *,
        require_incoming: bool = False,
        senders: Senders | None = None,
    ) -> ConnectionView:
        """Ask to connect ``room_id`` to another room, or approve its request."""
        await self.require_power(room_id, user_id)
        other, servers = await self.resolve_room(other_ref, via)
        if other == room_id:
            raise SynapseError(400, notices.self_connection(), Codes.BAD_JSON)
        there = await self._reader.side(other, room_id)
        if require_incoming and there.consent is None:
            text = notices.not_asked(other_ref, self._api.server_name, there.visible)
            raise SynapseError(404, text, Codes.NOT_FOUND)
        ferry = there.consent.ferry if there.consent is not None else self._bot.user_id
        if ferry == self._bot.user_id:
            await self._bot.ensure_registered()
        content: dict[str, Any] = {"room_id": other, "via": servers, "ferry": ferry}
        acks = sorted(set(acknowledge))
        if acks:
            content["acknowledge"] = acks
        if senders is not None:
            content["senders"] = senders.value
        await self._send_connection_state(user_id, room_id, other, content)
        return await self._status.view(room_id, other)

    async def revoke(self, user_id: str, room_id: str, other_ref: str) -> ConnectionView:
        await self.require_power(room_id, user_id)
        other, _ = await self.resolve_room(other_ref, via=[self._api.server_name])
        existing = (await self._reader.connection_events(room_id)).get(other)
        # A consent for a room counts for its successors too (room upgrades):
        # revoking one of those sends a "{}" naming it, which wins.
        none_here = existing is None or is_empty_content(existing.content)
        if none_here and (await self._status.view(room_id, other)).status is Status.REVOKED:
            text = notices.no_connection("This room", other_ref)
            raise SynapseError(404, text, Codes.NOT_FOUND)
        await self._send_connection_state(user_id, room_id, other, {})
        return await self._status.view(room_id, other)

    async def _send_connection_state(
        self, user_id: str, room_id: str, other: str, content: dict[str, Any]
    ) -> None:
        await self._api.create_and_send_event_into_room(
            {
                "type": CONNECTION_EVENT_TYPE,
                "room_id": room_id,
                "sender": user_id,
                "state_key": other,
                "content": content,
            }
        )
