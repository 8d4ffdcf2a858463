"""The target room's own moderation, which a pointer must not get round: a
sender it has banned, or whose server its ACL denies."""

from __future__ import annotations

from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.core.ids import server_of
from synapse_room_connect.ferry.interfaces import Withheld


class TargetModeration:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api

    async def withheld_by(self, event: EventBase, target: str) -> Withheld | None:
        member_key = ("m.room.member", event.sender)
        member = (await self._api.get_room_state(target, [member_key])).get(member_key)
        if member is not None and member.content.get("membership") == "ban":
            return Withheld.BAN
        server = server_of(event.sender)
        if server and await synapse_compat.server_denied(self._api, target, server):
            return Withheld.SERVER_ACL
        return None
