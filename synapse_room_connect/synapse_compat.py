"""The few Synapse internals the public ModuleApi does not expose.

Kept in one file so a Synapse upgrade has one place to check; the package pins
``matrix-synapse`` to the release line these were verified against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

from synapse.api.errors import AuthError
from synapse.api.filtering import Filter
from synapse.event_auth import get_user_power_level
from synapse.events.snapshot import UnpersistedEventContext
from synapse.http.servlet import parse_json
from synapse.module_api import EventBase, ModuleApi, Requester, SynapseRequest
from synapse.rest.client.room import SerializeMessagesDeps, encode_messages_response
from synapse.streams.config import PaginationConfig
from synapse.types import create_requester
from synapse.util.async_helpers import yieldable_gather_results
from synapse.visibility import filter_and_transform_events_for_client


class UnsupportedSynapseError(RuntimeError):
    """This Synapse lacks an internal the module relies on."""


# What the functions below reach for, checked once at start-up: a release that
# moved one fails there, naming itself, instead of at the first message.
_STORE_INTERNALS: tuple[str, ...] = (
    "get_events",
    "get_event",
    "is_host_joined",
    "get_rooms_for_user",
    "get_invited_rooms_for_local_user",
    "is_partial_state_room",
    "get_prev_events_for_room",
    "get_room_max_stream_ordering",
    "has_user_annotated_event",
    "get_applicable_edit",
    "get_applicable_edits",
    "check_local_user_in_room",
    "_events_stream_cache",
    "_curr_state_delta_stream_cache",
    "_get_event_cache",
)


def require_supported_synapse(api: ModuleApi) -> None:
    """Fail start-up, naming the Synapse version, if an internal this module
    uses is missing. Checked against 1.150.0 and 1.163.2 (both pass)."""
    import synapse
    from synapse.notifier import Notifier

    missing = [f"store.{name}" for name in _STORE_INTERNALS if not hasattr(api._store, name)]
    if not hasattr(UnpersistedEventContext, "batch_persist_unpersisted_contexts"):
        missing.append("UnpersistedEventContext.batch_persist_unpersisted_contexts")
    # The class, not hs.get_notifier(): building the notifier this early would
    # change the order in which Synapse starts its parts.
    if not hasattr(Notifier, "add_replication_callback"):
        missing.append("Notifier.add_replication_callback")
    if missing:
        raise UnsupportedSynapseError(
            f"synapse_room_connect cannot run on Synapse {synapse.__version__}: it lacks "
            f"{', '.join(missing)}. Supported releases: 1.150.0 to 1.163.x."
        )


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


async def server_denied(api: ModuleApi, room_id: str, server_name: str) -> bool:
    """Whether the room's ``m.room.server_acl`` denies ``server_name`` (cached by Synapse)."""
    state: Any = api._hs.get_storage_controllers().state
    acl = await state.get_server_acl_for_room(room_id)
    return acl is not None and not acl.server_matches_acl_event(server_name)


async def rooms_for_user(api: ModuleApi, user_id: str) -> frozenset[str]:
    """Rooms a local user is joined to."""
    store: Any = api._store
    return frozenset(await store.get_rooms_for_user(user_id))


async def rooms_invited_to(api: ModuleApi, user_id: str) -> frozenset[str]:
    """Rooms a local user is invited to (both lookups are cached by Synapse)."""
    store: Any = api._store
    return frozenset(r.room_id for r in await store.get_invited_rooms_for_local_user(user_id))


async def ensure_device(api: ModuleApi, user_id: str, device_id: str, display_name: str) -> None:
    """Register a device for a local user if it has none by that ID."""
    handler: Any = api._hs.get_device_handler()
    await handler.check_device_registered(user_id, device_id, display_name)


Items = Sequence[tuple[str, dict[str, Any]]]


async def send_chains(
    api: ModuleApi, user_id: str, device_id: str, chains: Mapping[str, Items]
) -> dict[str, Exception | None]:
    """Each room's ``(txn_id, event_dict)`` items as one chain (as Synapse sends
    a new room's events) under the room's linearizer; built concurrently,
    persisted in one call per event writer. Per room None or the error, maybe
    after persisting: read the IDs back with ``sent_transactions``."""
    hs = api._hs
    handler: Any = hs.get_event_creation_handler()
    requester = create_requester(user_id, device_id=device_id)
    store: Any = api._store
    results: dict[str, Exception | None] = {}
    chained = []
    for room_id in sorted(chains):  # sorted: two callers take linearizers in one order
        if not await store.is_partial_state_room(room_id):
            chained.append(room_id)
            continue
        # Mid federated join: only the single-event path waits for the room's state.
        try:
            for txn_id, event_dict in chains[room_id]:
                await handler.create_and_send_nonmember_event(
                    requester, event_dict, ratelimit=False, txn_id=txn_id
                )
            results[room_id] = None
        except Exception as e:
            results[room_id] = e
    by_writer: dict[str, list[list[Any]]] = {}

    async def build(room_id: str) -> None:
        try:
            chain = await _build_chain(api, handler, requester, room_id, chains[room_id])
        except Exception as e:
            results[room_id] = e
        else:
            writer = hs.config.worker.events_shard_config.get_instance(room_id)
            by_writer.setdefault(writer, []).append(chain)

    async def persist(group: list[list[Any]]) -> None:
        joint = [pair for chain in group for pair in chain]
        alone = len(group) == 1 or await _persist(handler, requester, joint) is not None
        for chain in group:  # alone: one bad room (the bot was kicked) holds back no other
            results[chain[0][0].room_id] = (
                await _persist(handler, requester, chain) if alone else None
            )

    async with AsyncExitStack() as linearized:
        for room_id in chained:
            await linearized.enter_async_context(handler.limiter.queue(room_id))
        await yieldable_gather_results(build, chained)
        await yieldable_gather_results(persist, list(by_writer.values()))
    return results


async def _persist(handler: Any, requester: Requester, pairs: list[Any]) -> Exception | None:
    try:
        await handler.handle_new_client_event(
            requester, pairs, ratelimit=False, ignore_shadow_ban=True
        )
    except Exception as e:
        return e
    return None


async def _build_chain(
    api: ModuleApi, handler: Any, requester: Requester, room_id: str, items: Items
) -> list[Any]:
    # On the deepest forward extremity; the next ordinary send merges the others.
    storage = api._hs.get_storage_controllers()
    store: Any = api._store
    prev_event_id = (await store.get_prev_events_for_room(room_id))[0]
    state_group = (await storage.state.get_state_group_for_events([prev_event_id]))[prev_event_id]
    state_map = dict(await storage.state.get_state_ids_for_group(state_group))
    depth: int | None = None
    unpersisted = []
    for txn_id, event_dict in items:
        event, context = await handler.create_event(
            requester,
            event_dict,
            txn_id=txn_id,
            prev_event_ids=[prev_event_id],
            depth=depth,
            state_map=dict(state_map),
            for_batch=True,
        )
        unpersisted.append((event, context))
        prev_event_id, depth = event.event_id, event.depth + 1
    return await UnpersistedEventContext.batch_persist_unpersisted_contexts(
        unpersisted, room_id, state_group, api._hs.get_datastores().state
    )


def stream_ordering_of(event: EventBase) -> int | None:
    ordering = event.internal_metadata.stream_ordering
    return None if ordering is None else int(ordering)


# What Synapse knows of an event beyond its JSON; checked against 1.150.0 and
# 1.163.2 (a Python class in the first, Rust in the second, same methods).
def is_outlier(event: EventBase) -> bool:
    """Held only as an outlier: known to Synapse but not in the room's timeline."""
    return bool(event.internal_metadata.is_outlier())


def is_redacted(event: EventBase) -> bool:
    return bool(event.internal_metadata.is_redacted())


def is_soft_failed(event: EventBase) -> bool:
    """Accepted by federation but kept from clients, as a banned sender's are."""
    return bool(event.internal_metadata.is_soft_failed())


def add_replication_callback(api: ModuleApi, callback: Callable[[], None]) -> None:
    """Call ``callback`` (synchronously) whenever this process learns of new
    data in any stream, events included; on workers too."""
    api._hs.get_notifier().add_replication_callback(callback)


def rooms_with_events_since(api: ModuleApi, position: int) -> list[str] | None:
    """Rooms with events after stream ``position``, from the in-memory cache
    /sync uses; None when the cache does not reach back that far."""
    store: Any = api._store
    result = store._events_stream_cache.get_all_entities_changed(position)
    return list(result.entities) if result.hit else None


def rooms_with_state_changes_since(api: ModuleApi, position: int) -> list[str] | None:
    """Rooms whose current state changed after ``position``, likewise."""
    store: Any = api._store
    result = store._curr_state_delta_stream_cache.get_all_entities_changed(position)
    return list(result.entities) if result.hit else None


def current_stream_position(api: ModuleApi) -> int:
    """The stream ordering of the newest event this process knows is persisted."""
    return int(api._store.get_room_max_stream_ordering())


async def has_annotation(api: ModuleApi, event_id: str, sender: str, key: str) -> bool:
    """Whether ``sender`` already reacted to ``event_id`` with ``key``: Synapse
    refuses a second one, which would fail a whole batch of sends."""
    store: Any = api._store
    return bool(await store.has_user_annotated_event(event_id, "m.reaction", key, sender))


_MISSING = object()


def cached_version(api: ModuleApi, event_id: str) -> tuple[str | None, bool] | None:
    """(latest edit's ID, redacted) of an event from Synapse's in-memory
    caches alone, or None when either is not cached.

    Synapse drops both entries (on every worker) before it announces an edit
    or a redaction, so a hit is current; a miss means "ask the store".
    """
    store: Any = api._store
    entry = store._get_event_cache.get_local((event_id,))
    if entry is None:
        return None
    if entry.redacted_event is not None:
        return (None, True)  # as the expansion sees it: a redacted event has no edit
    # Single-argument caches are keyed by the bare argument.
    edit = store.get_applicable_edit.cache.get_immediate(event_id, _MISSING)
    if edit is _MISSING:
        return None
    return (edit.event_id if edit is not None else None, False)


async def latest_edits(api: ModuleApi, event_ids: Iterable[str]) -> dict[str, EventBase]:
    """The newest valid ``m.replace`` of each event, by Synapse's own rules."""
    store: Any = api._store
    edits = await store.get_applicable_edits(list(event_ids))
    return {event_id: edit for event_id, edit in edits.items() if edit is not None}


async def _client_serialize_config(serializer: Any, requester: Requester) -> Any:
    """The serialization options ``/messages`` uses for this requester.

    Checked against 1.150.0 and 1.163.2. Newer releases build them with
    ``create_config`` (which also decides admin-only fields); 1.150.0 has no
    such method, builds ``SerializeEventConfig`` directly and decides admin
    fields inside ``serialize_event``.
    """
    if hasattr(serializer, "create_config"):
        return await serializer.create_config(as_client_event=True, requester=requester)
    # Imported here: later releases moved the class to Rust with more
    # required fields, and only releases without create_config get here.
    from synapse.events.utils import SerializeEventConfig

    config_class: Any = SerializeEventConfig
    return config_class(as_client_event=True, requester=requester)


async def messages_page(
    api: ModuleApi, requester: Requester, room_id: str, request: SynapseRequest
) -> dict[str, Any]:
    """Exactly what ``GET /rooms/{roomId}/messages`` answers this requester,
    parsing ``from``, ``to``, ``dir``, ``limit`` and ``filter`` the same way."""
    hs = api._hs
    store = hs.get_datastores().main
    config = await PaginationConfig.from_request(store, request, default_limit=10)
    filter_json = parse_json(request, "filter", encoding="utf-8")
    event_filter = Filter(hs, filter_json) if filter_json else None
    serializer = hs.get_event_client_serializer()
    options = await _client_serialize_config(serializer, requester)
    result = await hs.get_pagination_handler().get_messages(
        requester=requester,
        room_id=room_id,
        pagin_config=config,
        as_client_event=True,
        event_filter=event_filter,
    )
    return await encode_messages_response(
        get_messages_result=result,
        serialize_options=options,
        serialize_deps=SerializeMessagesDeps(
            clock=hs.get_clock(), event_serializer=serializer, store=store
        ),
    )


async def serialize_if_visible(
    api: ModuleApi, requester: Requester, event: EventBase
) -> dict[str, Any] | None:
    """The event as this requester's client would get it, or None if the
    room's history visibility and their membership hide it from them."""
    hs = api._hs
    user_id = requester.user.to_string()
    # The visibility filter assumes the caller already established that the
    # user is, was, or may peek into the room (as /event does): do the same,
    # or a stranger would read "shared" history.
    try:
        await hs.get_auth().check_user_in_room_or_world_readable(
            event.room_id, requester, allow_departed_users=True
        )
    except AuthError:
        return None
    store: Any = hs.get_datastores().main
    in_room = await store.check_local_user_in_room(user_id=user_id, room_id=event.room_id)
    visible = await filter_and_transform_events_for_client(
        hs.get_storage_controllers(), user_id, [event], is_peeking=not in_room
    )
    if not visible:
        return None
    serializer = hs.get_event_client_serializer()
    options = await _client_serialize_config(serializer, requester)
    serialized: dict[str, Any] = await serializer.serialize_event(
        visible[0], hs.get_clock().time_msec(), config=options
    )
    return serialized
