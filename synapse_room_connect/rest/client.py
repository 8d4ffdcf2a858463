"""REST endpoints under ``/_synapse/client/org.matrix.msc2923/``.

One leaf resource owns the whole prefix and routes on the remaining path
segments, so the routes read as a table rather than a tree of resources.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from synapse.module_api import (
    DirectServeJsonResource,
    ModuleApi,
    SynapseRequest,
    parse_json_object_from_request,
)
from synapse.module_api.errors import Codes, SynapseError

from synapse_room_connect.connections.actions import ConnectionActions, parse_connect_body
from synapse_room_connect.expansion.expander import Expander
from synapse_room_connect.rest.admin import AdminRoutes, Handler
from synapse_room_connect.store import Store

Response = tuple[int, Any]

_ROOM = r"(?P<room_id>![^/]+)"


class RoomConnectResource(DirectServeJsonResource):
    # Twisted's name: this resource answers for every path below it.
    isLeaf = True  # noqa: N815

    def __init__(
        self,
        api: ModuleApi,
        store: Store,
        bot_user_id: str,
        actions: ConnectionActions,
        expander: Expander,
        admin_routes: AdminRoutes,
        version: str,
    ) -> None:
        super().__init__()
        self._api = api
        self._version = version
        self._store = store
        self._bot_user_id = bot_user_id
        self._actions = actions
        self._expander = expander
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"^info$"), self._get_info),
            *admin_routes.routes(),
            ("GET", re.compile(rf"^rooms/{_ROOM}/connections$"), self._list),
            ("POST", re.compile(rf"^rooms/{_ROOM}/connections$"), self._connect),
            ("GET", re.compile(rf"^rooms/{_ROOM}/messages$"), self._messages),
            (
                "DELETE",
                re.compile(rf"^rooms/{_ROOM}/connections/(?P<other_room_id>![^/]+)$"),
                self._revoke,
            ),
        ]

    async def _async_render(self, request: SynapseRequest) -> Response:
        method = request.method.decode("ascii")
        if method == "HEAD":
            method = "GET"
        # Decode per segment so an encoded '/' inside a room ID cannot split a route.
        path = "/".join(unquote(seg.decode("utf-8")) for seg in request.postpath or [])
        allowed: list[str] = []
        for route_method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            if route_method == method:
                return await handler(request, match.groupdict())
            allowed.append(route_method)
        if allowed:
            raise SynapseError(405, f"Use {', '.join(allowed)} here", Codes.UNRECOGNIZED)
        raise SynapseError(404, "Unrecognized request", Codes.UNRECOGNIZED)

    async def _get_info(self, request: SynapseRequest, _: dict[str, str]) -> Response:
        return 200, {
            "version": self._version,
            "bot_user_id": self._bot_user_id,
            "schema_version": await self._store.schema_version(),
        }

    async def _list(self, request: SynapseRequest, params: dict[str, str]) -> Response:
        requester = await self._api.get_user_by_req(request)
        room_id = params["room_id"]
        await self._actions.require_member(room_id, requester.user.to_string())
        views = await self._actions.list_for(room_id)
        return 200, {"room_id": room_id, "connections": [v.to_json() for v in views]}

    async def _connect(self, request: SynapseRequest, params: dict[str, str]) -> Response:
        requester = await self._api.get_user_by_req(request)
        body = parse_connect_body(parse_json_object_from_request(request))
        view = await self._actions.request(
            requester.user.to_string(),
            params["room_id"],
            body.room,
            body.via,
            body.acknowledge,
            senders=body.senders,
        )
        return 200, view.to_json()

    async def _messages(self, request: SynapseRequest, params: dict[str, str]) -> Response:
        requester = await self._api.get_user_by_req(request)
        # get_messages enforces that the requester may read room_id itself.
        page = await self._expander.merged_messages(requester, params["room_id"], request)
        return 200, page

    async def _revoke(self, request: SynapseRequest, params: dict[str, str]) -> Response:
        requester = await self._api.get_user_by_req(request)
        view = await self._actions.revoke(
            requester.user.to_string(), params["room_id"], params["other_room_id"]
        )
        return 200, view.to_json()
