"""Carrying a room's connections over to its successor when it is upgraded.

Runs on the acting process, when the feed shows a tombstone. The successor
needs its own consent (docs/msc2923.md, "Room upgrades"): when the upgrader
is one of our users, we send it as them, copied from the old room's consent;
the guard still checks their power in the new room. When the upgrader is on
another server, that server's module does the same; if the connection has
not come over after a grace period (no module there, say), our ferry bot
tells both rooms the exact command that reconnects.

Both waits end in a restart as well as in time: start-up reconciliation
follows every tombstoned room again. Each (old room, other room) follow-up
is done once: a consent already in the successor is never sent again, and
an explanation, or giving up on another server's ferry, is recorded in the
bot's account data. A crash between posting an explanation and recording it
is the only way one is posted twice.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Protocol

import attrs
from synapse.module_api import EventBase
from synapse.module_api.errors import SynapseError

from synapse_room_connect.bot import notices
from synapse_room_connect.bot.ferry_bot import AccountDataManager
from synapse_room_connect.bot.room_names import RoomNamer
from synapse_room_connect.connections.status import side_toward
from synapse_room_connect.constants import CONNECTION_EVENT_TYPE
from synapse_room_connect.core.handshake import Consent, Side
from synapse_room_connect.core.matrix import server_of
from synapse_room_connect.core.upgrades import Link, carried_content, confirmed, latest

logger = logging.getLogger(__name__)

# How long a remote upgrader's server has to carry a connection over before
# our bot explains how to reconnect: an invite, a federated join and a state
# event, a few seconds on a healthy federation.
GRACE_SECONDS: Final = 10.0
# How long we wait for another server's ferry bot to join the successor.
FERRY_JOIN_ATTEMPTS: Final = 30


class UpgradeReader(Protocol):
    """What following an upgrade reads (rooms.RoomReader)."""

    async def visible(self, room_id: str) -> bool: ...

    async def side(self, room_id: str, other_room_id: str) -> Side: ...

    async def traits(self, room_id: str) -> Any: ...

    async def connection_events(self, room_id: str) -> dict[str, EventBase]: ...

    async def side_from_event(self, event: EventBase) -> Side: ...

    async def link(self, room_id: str) -> Link: ...


# Global account data of the bot, one type per tombstoned room: its
# follow-ups that are done with no consent in the successor to show for it.
SETTLED_TYPE_PREFIX: Final = "org.matrix.msc2923.upgrade_settled."


class UpgradeApi(Protocol):
    """The homeserver calls following an upgrade makes (a ModuleApi fits)."""

    @property
    def account_data_manager(self) -> AccountDataManager: ...

    def is_mine(self, user_id: str) -> bool: ...

    async def sleep(self, seconds: float) -> None: ...

    async def create_and_send_event_into_room(self, event_dict: dict[str, Any]) -> EventBase: ...

    async def update_room_membership(
        self, sender: str, target: str, room_id: str, new_membership: str
    ) -> EventBase: ...

    async def get_room_state(self, room_id: str, event_filter: Any = None) -> Any: ...


class UpgradeBot(Protocol):
    @property
    def user_id(self) -> str: ...

    async def membership(self, room_id: str) -> str | None: ...

    async def join(self, room_id: str, via: list[str], inviter: str | None = None) -> bool: ...

    async def notice(self, room_id: str, text: str, reply_to: str | None = None) -> None: ...


@attrs.define
class UpgradeFollower:
    _api: UpgradeApi
    _reader: UpgradeReader
    _bot: UpgradeBot
    _label: RoomNamer

    async def follow(self, old_room: str) -> None:
        """Carry ``old_room``'s consents over to its successor, or explain.

        Safe to run again (start-up does, for every tombstoned room): what
        was carried over or settled before is left alone."""
        link = await self._reader.link(old_room)
        new_room, sender = link.replacement, link.tombstone_sender
        if new_room is None or sender is None:
            return
        local = self._api.is_mine(sender)
        if local and not confirmed(link, await self._reader.link(new_room)):
            logger.warning(
                "Tombstone in %s names %s, which does not name it as predecessor: "
                "its connections are not carried over",
                old_room,
                new_room,
            )
            return
        settled = await self._settled(old_room)
        visible = await self._reader.visible(new_room)
        carried = await self._reader.connection_events(new_room) if visible else {}
        consents: list[tuple[str, Consent]] = []
        for other, event in (await self._reader.connection_events(old_room)).items():
            consent = (await self._reader.side_from_event(event)).consent
            target = await latest(other, self._reader.link)
            if consent is not None and target not in settled and target not in carried:
                consents.append((target, consent))
        if not local:
            # The upgrader's server carries them over if it runs the module;
            # only the ferry's server can tell the rooms if it did not.
            consents = [(t, c) for t, c in consents if c.ferry == self._bot.user_id]
            if consents:
                await self._api.sleep(GRACE_SECONDS)
        for target, consent in consents:
            if local and await self._carry(sender, new_room, target, consent):
                continue
            if not local and await self._carried(new_room, target, sender):
                continue
            if consent.ferry == self._bot.user_id:
                await self._explain(old_room, new_room, target, consent)
            # Otherwise the ferry's own server tells the rooms.
            settled.add(target)
            await self._settle(old_room, settled)

    async def _settled(self, old_room: str) -> set[str]:
        data = await self._api.account_data_manager.get_global(
            self._bot.user_id, SETTLED_TYPE_PREFIX + old_room
        )
        targets = data.get("targets") if data is not None else None
        # Synapse hands account data back frozen: the list is a tuple then.
        if not isinstance(targets, (list, tuple)):
            return set()
        return {t for t in targets if isinstance(t, str)}

    async def _settle(self, old_room: str, targets: set[str]) -> None:
        await self._api.account_data_manager.put_global(
            self._bot.user_id, SETTLED_TYPE_PREFIX + old_room, {"targets": sorted(targets)}
        )

    async def _carry(self, sender: str, new_room: str, target: str, consent: Consent) -> bool:
        content = carried_content(consent, target)
        try:
            if consent.ferry != self._bot.user_id and not await self._joined(
                new_room, consent.ferry
            ):
                # The guard takes another server's ferry only once it is in the room.
                await self._api.update_room_membership(sender, consent.ferry, new_room, "invite")
                if not await self._wait_for_join(new_room, consent.ferry):
                    logger.info("Ferry %s did not join %s in time", consent.ferry, new_room)
                    return False
            await self._api.create_and_send_event_into_room(
                {
                    "type": CONNECTION_EVENT_TYPE,
                    "room_id": new_room,
                    "sender": sender,
                    "state_key": target,
                    "content": content,
                }
            )
        except SynapseError as e:
            logger.info("Could not carry %s's connection to %s over: %s", new_room, target, e)
            return False
        logger.info("Carried the connection to %s over to %s as %s", target, new_room, sender)
        return True

    async def _joined(self, room_id: str, user_id: str) -> bool:
        key = ("m.room.member", user_id)
        member = (await self._api.get_room_state(room_id, [key])).get(key)
        return member is not None and member.content.get("membership") == "join"

    async def _wait_for_join(self, room_id: str, user_id: str) -> bool:
        for _ in range(FERRY_JOIN_ATTEMPTS):
            if await self._joined(room_id, user_id):
                return True
            await self._api.sleep(1)
        return False

    async def _carried(self, new_room: str, target: str, sender: str) -> bool:
        """Whether the upgrader's server carried the consent over; the bot
        enters the successor to see, and to explain there if not."""
        via = [s for s in (server_of(sender), server_of(new_room)) if s]
        if not await self._bot.join(new_room, via):
            return False
        return (await side_toward(self._reader, new_room, target)).consent is not None

    async def _explain(self, old_room: str, new_room: str, target: str, consent: Consent) -> None:
        """Tell both rooms the exact command that reconnects them."""
        content = carried_content(consent, target)
        text = notices.reconnect_after_upgrade(
            await self._label(old_room), await self._label(new_room), new_room, target, content
        )
        for room in (target, new_room):
            if await self._bot.membership(room) == "join":
                await self._bot.notice(room, text)
        logger.info(
            "Told %s and %s how to reconnect after %s's upgrade", target, new_room, old_room
        )
