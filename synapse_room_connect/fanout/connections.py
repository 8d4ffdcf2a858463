"""Which rooms a message goes to: the room's connections, as the module's REST API
on the user's own homeserver reports them, and the choice among them."""

from __future__ import annotations

from collections.abc import Container
from typing import Any, TypeVar
from urllib.parse import quote

import attrs

from synapse_room_connect.constants import HTTP_ROOT

# handshake.py is pure (no Synapse import), so the client shares its enums.
from synapse_room_connect.core.handshake import Mode, Status
from synapse_room_connect.fanout.errors import FanoutError

E = TypeVar("E", Status, Mode)


def _enum_or_none(kind: type[E], value: object) -> E | None:
    try:
        return kind(value)
    except ValueError:
        return None


@attrs.frozen
class Connection:
    room_id: str
    # None: a value this client does not know (a newer server's).
    status: Status | None
    mode: Mode | None
    via: tuple[str, ...] = ()


async def list_connections(client: Any, access_token: str, room_id: str) -> list[Connection]:
    """The room's connections, asked of the homeserver through the nio ``client``."""
    path = f"{HTTP_ROOT}/rooms/{quote(room_id, safe='')}/connections"
    response = await client.send("GET", path, headers={"Authorization": f"Bearer {access_token}"})
    try:
        body = await response.json(content_type=None)
    finally:
        response.release()
    if response.status != 200 or not isinstance(body, dict):
        raise FanoutError(f"listing connections of {room_id} failed: {response.status} {body}")
    found: list[Connection] = []
    for item in body.get("connections", []):
        if isinstance(item, dict) and isinstance(item.get("room_id"), str):
            found.append(
                Connection(
                    room_id=item["room_id"],
                    status=_enum_or_none(Status, item.get("status")),
                    mode=_enum_or_none(Mode, item.get("mode")),
                    via=tuple(str(v) for v in item.get("via") or ()),
                )
            )
    return found


def choose_targets(
    room_id: str, connections: list[Connection], joined: Container[str], user_id: str
) -> tuple[list[str], dict[str, str]]:
    """Rooms a message written in ``room_id`` goes to (itself first), and
    connected rooms left out with the reason."""
    rooms: list[str] = [room_id]
    skipped: dict[str, str] = {}
    for connection in connections:
        other = connection.room_id
        if connection.status is not Status.ACTIVE or other in rooms:
            continue
        if connection.mode is not Mode.CLIENT_FANOUT:
            mode = connection.mode.value if connection.mode else "unknown"
            skipped[other] = f"mode {mode}: the server carries messages"
        elif other not in joined:
            skipped[other] = f"{user_id} has not joined this room"
        else:
            rooms.append(other)
    return rooms, skipped
