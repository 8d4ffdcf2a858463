"""How the module names a room in text: the one place a room's alias and name
are read and turned into words.

Two forms, because they serve two readers: a room's *label* is for a
sentence (its alias, else its name with its ID, else its ID), its *address*
is for something a person may type or a client may resolve (its alias, else
its ID: a name is not an address), as in commands and pointers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
from synapse.module_api import ModuleApi

logger = logging.getLogger(__name__)

_NAME_STATE: Final = (("m.room.canonical_alias", ""), ("m.room.name", ""))

# A room's label or address, read through an api (``room_label`` or
# ``room_address`` bound to one).
RoomNamer = Callable[[str], Awaitable[str]]


@attrs.frozen
class RoomNames:
    room_id: str
    alias: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """The room, named for a sentence: its alias, else its name (with the
        ID, since names are not unique), else its ID."""
        if self.alias:
            return self.alias
        if self.name:
            return f'"{self.name}" ({self.room_id})'
        return self.room_id

    @property
    def address(self) -> str:
        """The room, named for a command or a pointer: its alias, else its ID."""
        return self.alias or self.room_id


async def room_names(api: ModuleApi, room_id: str) -> RoomNames:
    """The alias and name this server knows for ``room_id``; a room it is not in
    has neither. One state read: the ferry asks this for every pointer."""
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


async def room_label(api: ModuleApi, room_id: str) -> str:
    return (await room_names(api, room_id)).label


async def room_address(api: ModuleApi, room_id: str) -> str:
    return (await room_names(api, room_id)).address
