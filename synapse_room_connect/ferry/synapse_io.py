"""The ferry's event source and sender, over Synapse."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.ferry.interfaces import Outgoing
from synapse_room_connect.store import Store


class SynapseEvents:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api

    async def get_event(self, event_id: str) -> EventBase | None:
        return await synapse_compat.get_event(self._api, event_id)


class BotSender:
    """Sends as the ferry bot's own device, so Synapse keeps each transaction
    ID with its event and a resend after a crash can be answered from it."""

    def __init__(self, api: ModuleApi, store: Store, user_id: str, device_id: str) -> None:
        self._api = api
        self._store = store
        self._user_id = user_id
        self._device_id = device_id

    async def already_sent(self, wanted: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return await self._store.sent_transactions(self._user_id, self._device_id, wanted)

    async def send(self, chains: Mapping[str, Sequence[Outgoing]]) -> dict[str, Exception | None]:
        events = {
            room_id: [(i.txn_id, i.counterpart.event_dict(room_id, self._user_id)) for i in items]
            for room_id, items in chains.items()
        }
        return await synapse_compat.send_chains(self._api, self._user_id, self._device_id, events)
