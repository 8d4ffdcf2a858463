"""The few Synapse internals the public ModuleApi does not expose.

Kept in one file so a Synapse upgrade has one place to check; the package pins
``matrix-synapse`` to the release line these were verified against.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from synapse.event_auth import get_user_power_level
from synapse.module_api import EventBase, ModuleApi
from synapse.types import create_requester


async def get_events(api: ModuleApi, event_ids: Iterable[str]) -> dict[str, EventBase]:
    """Fetch events by ID; unknown or rejected ones are left out."""
    return dict(await api._store.get_events(list(event_ids)))


async def get_event(api: ModuleApi, event_id: str) -> EventBase | None:
    return await api._store.get_event(event_id, allow_none=True)


async def sender_power_at_event(api: ModuleApi, event: EventBase) -> int:
    """The sender's power level in force when ``event`` was sent.

    An event's auth events are exactly the create, power levels and member
    events the spec's auth rules used for it, so they answer "at that moment"
    without a state lookup, for local and federated events alike.
    """
    auth = await get_events(api, event.auth_event_ids())
    auth_state = {(e.type, e.state_key): e for e in auth.values() if e.state_key is not None}
    return power_in_state(auth_state, event.sender)


def power_in_state(state: dict[tuple[str, str], EventBase], user_id: str) -> int:
    """A user's power level given a state map holding the create event.

    Delegates to Synapse's own auth-rule implementation so creator power in
    room version 12 and string levels in old rooms count exactly as the
    homeserver counts them.
    """
    if ("m.room.create", "") not in state:
        return 0
    return int(get_user_power_level(user_id, state))


async def server_in_room(api: ModuleApi, room_id: str) -> bool:
    """Whether this homeserver is joined to ``room_id`` and can read its state."""
    # Synapse's @cached descriptors need its mypy plugin to type-check.
    store: Any = api._store
    return bool(await store.is_host_joined(room_id, api.server_name))


async def rooms_for_user(api: ModuleApi, user_id: str) -> frozenset[str]:
    """Rooms a local user is joined to."""
    store: Any = api._store
    return frozenset(await store.get_rooms_for_user(user_id))


async def ensure_device(api: ModuleApi, user_id: str, device_id: str, display_name: str) -> None:
    """Register a device for a local user if it has none by that ID."""
    handler: Any = api._hs.get_device_handler()
    await handler.check_device_registered(user_id, device_id, display_name)


async def send_idempotent(
    api: ModuleApi, user_id: str, device_id: str, event_dict: dict[str, Any], txn_id: str
) -> EventBase:
    """Send an event as a local user's device with a transaction ID.

    Synapse stores the transaction ID with the event in the same database
    transaction and answers a repeated send with the event already persisted,
    which is what makes re-running the ferry after a crash exactly-once. The
    ModuleApi's own send takes no transaction ID, hence the internal handler.
    """
    requester = create_requester(user_id, device_id=device_id)
    handler = api._hs.get_event_creation_handler()
    event, _ = await handler.create_and_send_nonmember_event(
        requester, event_dict, ratelimit=False, txn_id=txn_id
    )
    return event


def stream_ordering_of(event: EventBase) -> int | None:
    ordering = event.internal_metadata.stream_ordering
    return None if ordering is None else int(ordering)


def current_stream_position(api: ModuleApi) -> int:
    """The stream ordering of the newest event this process knows is persisted."""
    return int(api._store.get_room_max_stream_ordering())


async def latest_edits(api: ModuleApi, event_ids: Iterable[str]) -> dict[str, EventBase]:
    """The newest valid ``m.replace`` of each event, by Synapse's own rules."""
    store: Any = api._store
    edits = await store.get_applicable_edits(list(event_ids))
    return {event_id: edit for event_id, edit in edits.items() if edit is not None}
