"""Sending the ferry's events: the device, and many rooms' pointers persisted
in one call per event writer, the way Synapse sends a new room's events.

Each event is created for its own sender (the bot, or a person's ghost),
on the same device ID, so Synapse keeps its transaction ID under that
sender; the chain is persisted as the bot, which only decides presence and
rate limits, both off for these sends."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

from synapse.events.snapshot import UnpersistedEventContext
from synapse.module_api import ModuleApi, Requester
from synapse.types import create_requester
from synapse.util.async_helpers import yieldable_gather_results


async def ensure_device(api: ModuleApi, user_id: str, device_id: str, display_name: str) -> None:
    """Register a device for a local user if it has none by that ID.
    Checked against 1.150.0 and 1.163.2."""
    handler: Any = api._hs.get_device_handler()
    await handler.check_device_registered(user_id, device_id, display_name)


Items = Sequence[tuple[str, dict[str, Any]]]


async def send_chains(
    api: ModuleApi, user_id: str, device_id: str, chains: Mapping[str, Items]
) -> dict[str, Exception | None]:
    """Each room's ``(txn_id, event_dict)`` items as one chain (as Synapse sends
    a new room's events) under the room's linearizer; built concurrently,
    persisted in one call per event writer. Each event is created by its
    ``sender`` on ``device_id``; ``user_id`` (the bot) persists them. Per room
    None or the error, maybe after persisting: read the IDs back with
    ``sent_transactions``. Checked against 1.150.0 and 1.163.2."""
    hs = api._hs
    handler: Any = hs.get_event_creation_handler()
    requester = create_requester(user_id, device_id=device_id)
    requesters = {user_id: requester}

    def requester_for(event_dict: dict[str, Any]) -> Requester:
        sender = str(event_dict.get("sender", user_id))
        if sender not in requesters:
            # Puppeted by the server: a ghost never counts against the MAU
            # limit (it makes no request of its own), so Synapse's
            # auth-blocking check must not stop it when the server is full.
            requesters[sender] = create_requester(
                sender, device_id=device_id, authenticated_entity=api.server_name
            )
        return requesters[sender]

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
                    requester_for(event_dict), event_dict, ratelimit=False, txn_id=txn_id
                )
            results[room_id] = None
        except Exception as e:
            results[room_id] = e
    by_writer: dict[str, list[list[Any]]] = {}

    async def build(room_id: str) -> None:
        try:
            chain = await _build_chain(api, handler, requester_for, room_id, chains[room_id])
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
    """Checked against 1.150.0 and 1.163.2."""
    try:
        await handler.handle_new_client_event(
            requester, pairs, ratelimit=False, ignore_shadow_ban=True
        )
    except Exception as e:
        return e
    return None


async def _build_chain(
    api: ModuleApi,
    handler: Any,
    requester_for: Callable[[dict[str, Any]], Requester],
    room_id: str,
    items: Items,
) -> list[Any]:
    """On the deepest forward extremity whose state has every sender of the
    chain joined; the next ordinary send merges the others. A ghost's join can
    fork the room (another event created at the same moment on the same
    parent), and a chain built on the branch without the join would be
    refused. Checked against 1.150.0 and 1.163.2."""
    storage = api._hs.get_storage_controllers()
    store: Any = api._store
    extremities = list(await store.get_prev_events_for_room(room_id))
    senders = {str(event_dict["sender"]) for _, event_dict in items}
    prev_event_id = extremities[0]
    state_group, state_map = await _state_at(storage, prev_event_id)
    # One extremity (the usual case): nothing to choose, no extra read.
    if len(extremities) > 1 and not await _all_joined(store, state_map, senders):
        for candidate in extremities[1:]:
            group, candidate_map = await _state_at(storage, candidate)
            if await _all_joined(store, candidate_map, senders):
                prev_event_id, state_group, state_map = candidate, group, candidate_map
                break
    depth: int | None = None
    unpersisted = []
    for txn_id, event_dict in items:
        event, context = await handler.create_event(
            requester_for(event_dict),
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


async def _state_at(storage: Any, event_id: str) -> tuple[int, dict[Any, str]]:
    """The state group after ``event_id`` and its state map. Checked against
    1.150.0 and 1.163.2."""
    state_group = (await storage.state.get_state_group_for_events([event_id]))[event_id]
    return state_group, dict(await storage.state.get_state_ids_for_group(state_group))


async def _all_joined(store: Any, state_map: dict[Any, str], senders: set[str]) -> bool:
    """Whether every sender is joined in ``state_map``. Checked against
    1.150.0 and 1.163.2."""
    member_ids = [state_map.get(("m.room.member", sender)) for sender in senders]
    if any(event_id is None for event_id in member_ids):
        return False
    members = await store.get_events([event_id for event_id in member_ids if event_id])
    return len(members) == len(senders) and all(
        member.content.get("membership") == "join" for member in members.values()
    )
