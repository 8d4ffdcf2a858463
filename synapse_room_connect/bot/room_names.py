"""What people call a room: its alias, else its name; its ID only when it has neither."""

from __future__ import annotations

import logging
from typing import Final

import attrs
from synapse.module_api import ModuleApi

from synapse_room_connect.bot import notices

logger = logging.getLogger(__name__)

_NAME_STATE: Final = (("m.room.canonical_alias", ""), ("m.room.name", ""))


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
    has neither. One state read, as the alias alone took: the ferry asks this
    for every pointer."""
    try:
        state = await api.get_room_state(room_id, _NAME_STATE)
    except Exception as e:
        logger.debug("No names for %s: %s", room_id, e)
        return RoomNames(room_id)
    alias_event = state.get(("m.room.canonical_alias", ""))
    name_event = state.get(("m.room.name", ""))
    alias = alias_event.content.get("alias") if alias_event is not None else None
    name = name_event.content.get("name") if name_event is not None else None
    return RoomNames(
        room_id,
        alias=alias if isinstance(alias, str) and alias.startswith("#") else None,
        name=name.strip() or None if isinstance(name, str) else None,
    )


async def alias_or_id(api: ModuleApi, room_id: str) -> str:
    """The room as pointers name it: its alias, else its ID (their text is
    the ferry's rendering, which names rooms only by address)."""
    return (await room_names(api, room_id)).ref
