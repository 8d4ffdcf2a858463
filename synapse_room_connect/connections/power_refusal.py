"""The refusal of a member without the power to change connections: who can.

A member refused with "needs power level 100; you have 0" cannot act on it
alone. The refusal names the members who have the level, and for a room an
application service runs (a bridge's portal, where the bridge's bot created
the room and is its one admin) the two routes that act for it: the bridge's
own as_token, or a homeserver admin (docs/msc2923.md, section 11).
"""

from __future__ import annotations

from collections.abc import Mapping

from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.bot import notices


def _displayname(member: EventBase) -> str | None:
    name = member.content.get("displayname")
    return name if isinstance(name, str) and name.strip() else None


def holders_in(
    state: Mapping[tuple[str, str], EventBase], threshold: int
) -> list[tuple[str | None, str]]:
    """Joined members with ``threshold`` power as (display name, user ID),
    most powerful first (ties by user ID)."""
    plain = dict(state)
    found = []
    for (etype, user_id), event in state.items():
        if etype != "m.room.member" or event.content.get("membership") != "join":
            continue
        power = synapse_compat.power_in_state(plain, user_id)
        if power >= threshold:
            found.append((-power, user_id, _displayname(event)))
    return [(name, user_id) for _, user_id, name in sorted(found)]


async def power_refusal(
    api: ModuleApi, room_id: str, user_id: str, power: int, threshold: int
) -> str:
    """The text refusing ``user_id`` (with ``power``) in ``room_id``."""
    state = await api.get_room_state(
        room_id, [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", None)]
    )
    holders = holders_in(state, threshold)
    create = state.get(("m.room.create", ""))
    # The creator, then the most powerful member: a bridge either created
    # the room or was handed its power.
    candidates = ([create.sender] if create is not None else []) + [u for _, u in holders[:1]]
    bridge = None
    for candidate in candidates:
        service = synapse_compat.appservice_of(api, candidate)
        if service is not None:
            bridge = notices.bridge_routes(room_id, service, candidate, api.server_name)
            break
    return notices.power_refused(threshold, user_id, power, holders, bridge)
