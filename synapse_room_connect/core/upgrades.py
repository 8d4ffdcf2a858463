"""The successor rule for room upgrades: which room replaced which.

Pure: the callers read a room's tombstone and create event into a ``Link``;
the rules here decide whether two links make a confirmed upgrade and follow
the chain. A link counts only when both ends agree (the old room's tombstone
names the new room, and the new room's create event names the old one), so a
tombstone cannot hand a connection to somebody else's room.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import attrs

from synapse_room_connect.core.handshake import Consent

# Enough for any real history of upgrades; bounds the reads a bad chain costs.
MAX_HOPS: Final = 10

_ROOM_ID_RE: Final = re.compile(r"^![^:\s]+(:\S+)?$")


@attrs.frozen
class Link:
    """What one room's current state says about its place in an upgrade chain."""

    room_id: str
    # m.room.tombstone's replacement_room: the room says it was replaced.
    replacement: str | None = None
    # m.room.create's predecessor.room_id: the room says it replaced another.
    predecessor: str | None = None
    # Set whenever the room has a tombstone, even one naming no valid room.
    tombstone_sender: str | None = None

    @property
    def tombstoned(self) -> bool:
        return self.tombstone_sender is not None


# Reads a room's link; a room this server cannot see has an empty one.
LinkOf = Callable[[str], Awaitable[Link]]


def _room_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _ROOM_ID_RE.match(value) else None


def replacement_in(tombstone_content: Mapping[str, Any]) -> str | None:
    """The successor a tombstone names, or None if it names no valid room."""
    return _room_id(tombstone_content.get("replacement_room"))


def predecessor_in(create_content: Mapping[str, Any]) -> str | None:
    """The room a create event says this room replaced, if any."""
    predecessor = create_content.get("predecessor")
    if not isinstance(predecessor, Mapping):
        return None
    return _room_id(predecessor.get("room_id"))


def confirmed(old: Link, new: Link) -> bool:
    """Whether ``new`` is the upgrade of ``old``: both rooms say so."""
    return (
        old.room_id != new.room_id
        and old.replacement == new.room_id
        and new.predecessor == old.room_id
    )


async def _chain(room_id: str, link_of: LinkOf, *, forward: bool) -> list[str]:
    """Confirmed rooms from ``room_id`` on, newer ones if ``forward`` (at most MAX_HOPS)."""
    chain: list[str] = []
    seen = {room_id}
    current = await link_of(room_id)
    while len(chain) < MAX_HOPS:
        following = current.replacement if forward else current.predecessor
        if following is None or following in seen:
            break  # the end, or a cycle: no real upgrade history makes one
        found = await link_of(following)
        if not (confirmed(current, found) if forward else confirmed(found, current)):
            break
        chain.append(found.room_id)
        seen.add(found.room_id)
        current = found
    return chain


async def successors(room_id: str, link_of: LinkOf) -> list[str]:
    """The confirmed successors of ``room_id``, oldest first (at most MAX_HOPS)."""
    return await _chain(room_id, link_of, forward=True)


async def predecessors(room_id: str, link_of: LinkOf) -> list[str]:
    """The confirmed predecessors of ``room_id``, newest first (at most MAX_HOPS)."""
    return await _chain(room_id, link_of, forward=False)


async def latest(room_id: str, link_of: LinkOf) -> str:
    """The newest confirmed successor of ``room_id``, or the room itself."""
    chain = await successors(room_id, link_of)
    return chain[-1] if chain else room_id


def carried_content(consent: Consent, other_room_id: str) -> dict[str, Any]:
    """The connection content a successor gets from its predecessor's consent:
    the same ferry, servers and acknowledgements, naming ``other_room_id``
    (the other room's newest successor), and who it asked to send into it."""
    content: dict[str, Any] = {
        "room_id": other_room_id,
        "via": list(consent.via),
        "ferry": consent.ferry,
    }
    if consent.acknowledge:
        content["acknowledge"] = sorted(consent.acknowledge)
    if consent.senders is not None:
        content["senders"] = consent.senders.value
    return content
