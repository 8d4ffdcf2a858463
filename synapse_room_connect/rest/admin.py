"""The homeserver admin's REST endpoints, under ``admin/`` of the module's root.

Returned as route entries for the module's one resource (see rest/client.py), so
they share its path decoding and error handling. Server admins only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from synapse.module_api import ModuleApi, SynapseRequest, parse_json_object_from_request
from synapse.module_api.errors import Codes, SynapseError

from synapse_room_connect.admin.actions import AdminActions
from synapse_room_connect.admin.view import ConnectionDirectory, parse_limit
from synapse_room_connect.bot.ferry_bot import FerryBot
from synapse_room_connect.connections.actions import ConnectionActions, parse_connect_body
from synapse_room_connect.store import Store

Response = tuple[int, Any]
Handler = Callable[[SynapseRequest, dict[str, str]], Awaitable[Response]]
Route = tuple[str, re.Pattern[str], Handler]

_ROOM = r"(?P<room_id>![^/]+)"
_OTHER = r"(?P<other_room_id>![^/]+)"


def _query_arg(request: SynapseRequest, name: str) -> str | None:
    values = request.args.get(name.encode("ascii")) if request.args else None
    return values[0].decode("utf-8") if values else None


class AdminRoutes:
    def __init__(
        self, api: ModuleApi, actions: AdminActions, directory: ConnectionDirectory
    ) -> None:
        self._api = api
        self._actions = actions
        self._directory = directory

    def routes(self) -> list[Route]:
        return [
            ("GET", re.compile(r"^admin/connections$"), self._list),
            ("POST", re.compile(rf"^admin/rooms/{_ROOM}/connections$"), self._connect),
            ("DELETE", re.compile(rf"^admin/rooms/{_ROOM}/connections/{_OTHER}$"), self._revoke),
        ]

    async def _require_admin(self, request: SynapseRequest) -> str:
        requester = await self._api.get_user_by_req(request)
        user_id = requester.user.to_string()
        if not await self._api.is_user_admin(user_id):
            raise SynapseError(
                403, "Only a server admin of this homeserver may use this.", Codes.FORBIDDEN
            )
        return user_id

    async def _list(self, request: SynapseRequest, _: dict[str, str]) -> Response:
        await self._require_admin(request)
        limit = parse_limit(_query_arg(request, "limit"))
        page = await self._directory.page(_query_arg(request, "from"), limit)
        return 200, page.to_json()

    async def _connect(self, request: SynapseRequest, params: dict[str, str]) -> Response:
        admin = await self._require_admin(request)
        body = parse_connect_body(parse_json_object_from_request(request))
        view = await self._actions.connect(
            admin, params["room_id"], body.room, body.via, body.acknowledge
        )
        return 200, view.to_json()

    async def _revoke(self, request: SynapseRequest, params: dict[str, str]) -> Response:
        admin = await self._require_admin(request)
        view = await self._actions.revoke(admin, params["room_id"], params["other_room_id"])
        return 200, view.to_json()


def build_admin_routes(
    api: ModuleApi,
    store: Store,
    bot: FerryBot,
    actions: ConnectionActions,
    approve_power_level: int,
) -> AdminRoutes:
    return AdminRoutes(
        api,
        AdminActions(api, actions, bot, approve_power_level),
        ConnectionDirectory(api, store, approve_power_level),
    )
