"""Room state as Synapse holds it: power levels, membership of this server
and of local users, and server ACLs."""

from __future__ import annotations

from typing import Any

from synapse.event_auth import get_user_power_level
from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect.synapse_compat.events import get_events


async def sender_power_at_event(api: ModuleApi, event: EventBase) -> int:
    """The sender's power level in force when ``event`` was sent.

    An event's auth events are exactly the create, power levels and member
    events the spec's auth rules used for it, so they answer "at that moment"
    without a state lookup, for local and federated events alike.
    Checked against 1.150.0 and 1.163.2.
    """
    auth = await get_events(api, event.auth_event_ids())
    auth_state = {(e.type, e.state_key): e for e in auth.values() if e.state_key is not None}
    return power_in_state(auth_state, event.sender)


def power_in_state(state: dict[tuple[str, str], EventBase], user_id: str) -> int:
    """A user's power level given a state map holding the create event.

    Delegates to Synapse's own auth-rule implementation so creator power in
    room version 12 and string levels in old rooms count exactly as the
    homeserver counts them.
    Checked against 1.150.0 and 1.163.2.
    """
    if ("m.room.create", "") not in state:
        return 0
    return int(get_user_power_level(user_id, state))


async def server_in_room(api: ModuleApi, room_id: str) -> bool:
    """Whether this homeserver is joined to ``room_id`` and can read its state.
    Checked against 1.150.0 and 1.163.2."""
    # Synapse's @cached descriptors need its mypy plugin to type-check.
    store: Any = api._store
    return bool(await store.is_host_joined(room_id, api.server_name))


async def server_denied(api: ModuleApi, room_id: str, server_name: str) -> bool:
    """Whether the room's ``m.room.server_acl`` denies ``server_name`` (cached by Synapse).
    Checked against 1.150.0 and 1.163.2."""
    state: Any = api._hs.get_storage_controllers().state
    acl = await state.get_server_acl_for_room(room_id)
    return acl is not None and not acl.server_matches_acl_event(server_name)


async def rooms_for_user(api: ModuleApi, user_id: str) -> frozenset[str]:
    """Rooms a local user is joined to. Checked against 1.150.0 and 1.163.2."""
    store: Any = api._store
    return frozenset(await store.get_rooms_for_user(user_id))


async def rooms_invited_to(api: ModuleApi, user_id: str) -> frozenset[str]:
    """Rooms a local user is invited to (both lookups are cached by Synapse).
    Checked against 1.150.0 and 1.163.2."""
    store: Any = api._store
    return frozenset(r.room_id for r in await store.get_invited_rooms_for_local_user(user_id))
