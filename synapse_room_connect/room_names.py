"""What people call a room: its alias, else its name; its ID only when it has neither."""

from __future__ import annotations

import logging

import attrs
from synapse.module_api import ModuleApi, RoomID

from synapse_room_connect import notices

logger = logging.getLogger(__name__)


@attrs.frozen
class RoomNames:
    room_id: str
    alias: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """The room, named for a sentence."""
        return notices.room_label(self.alias, self.name, self.room_id)

    @property
    def ref(self) -> str:
        """The room, named for a command: an alias or the ID (a name is not an address)."""
        return self.alias or self.room_id


async def room_names(api: ModuleApi, room_id: str) -> RoomNames:
    """The alias and name this server knows for ``room_id``; a room it is not in
    (or an ID it cannot parse) has neither."""
    try:
        parsed = RoomID.from_string(room_id)
    except Exception:
        return RoomNames(room_id)
    try:
        alias = await api.get_canonical_room_alias(parsed)
        state = await api.get_room_state(room_id, [("m.room.name", "")])
    except Exception as e:
        logger.debug("No names for %s: %s", room_id, e)
        return RoomNames(room_id)
    event = state.get(("m.room.name", ""))
    name = event.content.get("name") if event is not None else None
    return RoomNames(
        room_id,
        alias=alias.to_string() if alias is not None else None,
        name=name.strip() or None if isinstance(name, str) else None,
    )
