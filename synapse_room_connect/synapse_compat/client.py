"""Events as a client gets them: a ``/messages`` page and a single event,
serialised and filtered by history visibility exactly as Synapse does."""

from __future__ import annotations

from typing import Any

from synapse.api.errors import AuthError
from synapse.api.filtering import Filter
from synapse.http.servlet import parse_json
from synapse.module_api import EventBase, ModuleApi, Requester, SynapseRequest
from synapse.rest.client.room import SerializeMessagesDeps, encode_messages_response
from synapse.streams.config import PaginationConfig
from synapse.visibility import filter_and_transform_events_for_client


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
    parsing ``from``, ``to``, ``dir``, ``limit`` and ``filter`` the same way.
    Checked against 1.150.0 and 1.163.2."""
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
    room's history visibility and their membership hide it from them.
    Checked against 1.150.0 and 1.163.2."""
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
