"""The body of a connect request, as the room admin's and the homeserver
admin's REST endpoints both take it."""

from __future__ import annotations

from typing import Any

import attrs
from synapse.module_api.errors import Codes, SynapseError

from synapse_room_connect.constants import ACK_ENCRYPTION, ACK_VISIBILITY


@attrs.frozen
class ConnectBody:
    room: str
    via: tuple[str, ...] = ()
    acknowledge: tuple[str, ...] = ()


def parse_connect_body(body: dict[str, Any]) -> ConnectBody:
    """Check ``{"room", "via"?, "acknowledge"?}``; a 400 naming the bad key otherwise."""
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
    return ConnectBody(room, tuple(via), tuple(acknowledge))
