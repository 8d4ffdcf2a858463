"""Which requests the asked room has been told about, kept across restarts.

The asked room hears of a request only once the bot is in it, which may be
long after the request (an admin there invites the bot when the requester
tells them to). Reconciliation then announces it, so it must know whether
it already did: the bot's global account data holds, per asked room, the
connection event of each request announced there. A new request (a new
connection event from the asking room) is announced again; a restart or a
repeated reconciliation is not. A crash between posting the notice and
recording it is the only way one is posted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

import attrs

from synapse_room_connect.bot.ferry_bot import AccountDataManager

# Global account data of the bot, one type per asked room:
# {"requests": {asking room ID: event ID of the announced request}}.
ANNOUNCED_TYPE_PREFIX: Final = "org.matrix.msc2923.request_announced."


class AnnouncementsApi(Protocol):
    @property
    def account_data_manager(self) -> AccountDataManager: ...


@attrs.define
class RequestAnnouncements:
    _api: AnnouncementsApi
    _bot_user_id: str

    async def _requests(self, room_id: str) -> dict[str, str]:
        data = await self._api.account_data_manager.get_global(
            self._bot_user_id, ANNOUNCED_TYPE_PREFIX + room_id
        )
        requests = data.get("requests") if data is not None else None
        # Synapse hands account data back frozen (an immutabledict, a Mapping).
        if not isinstance(requests, Mapping):
            return {}
        return {k: v for k, v in requests.items() if isinstance(k, str) and isinstance(v, str)}

    async def announced(self, room_id: str, other_room_id: str, request_event_id: str) -> bool:
        """Whether ``room_id`` was told of the request ``request_event_id`` of ``other_room_id``."""
        return (await self._requests(room_id)).get(other_room_id) == request_event_id

    async def record(self, room_id: str, other_room_id: str, request_event_id: str) -> None:
        requests = await self._requests(room_id)
        requests[other_room_id] = request_event_id
        await self._api.account_data_manager.put_global(
            self._bot_user_id, ANNOUNCED_TYPE_PREFIX + room_id, {"requests": requests}
        )
