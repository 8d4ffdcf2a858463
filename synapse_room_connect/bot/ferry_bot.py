"""The ferry bot: a local user the module creates on first use and speaks as."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_room_connect import synapse_compat
from synapse_room_connect.bot import join_rules
from synapse_room_connect.bot.notice_format import rendered
from synapse_room_connect.core.matrix import server_of

logger = logging.getLogger(__name__)


_JOIN_ATTEMPTS: Final = 3
_JOIN_RETRY_SECONDS: Final = 0.5


class AccountDataManager(Protocol):
    """ModuleApi.account_data_manager: where the bot keeps, in its global
    account data, what it must remember across restarts."""

    async def get_global(self, user_id: str, data_type: str) -> Mapping[str, Any] | None: ...

    async def put_global(self, user_id: str, data_type: str, new_data: dict[str, Any]) -> None: ...


class FerryBot:
    def __init__(self, api: ModuleApi, localpart: str, displayname: str) -> None:
        self._api = api
        self._localpart = localpart
        self._displayname = displayname
        self.user_id = api.get_qualified_user_id(localpart)
        self._registered = False

    async def ensure_registered(self) -> None:
        if self._registered:
            return
        if await self._api.check_user_exists(self.user_id) is None:
            try:
                await self._api.register_user(self._localpart, displayname=self._displayname)
                logger.info("Registered ferry bot %s", self.user_id)
            except SynapseError as e:
                # Another process may have registered it between our check and
                # our attempt; anything else is a real failure.
                if await self._api.check_user_exists(self.user_id) is None:
                    raise
                logger.debug("Ferry bot registered concurrently: %s", e)
        self._registered = True

    async def joined_rooms(self) -> frozenset[str]:
        return await synapse_compat.rooms_for_user(self._api, self.user_id)

    async def rooms_with_membership(self) -> frozenset[str]:
        """Rooms the bot is joined or invited to: where it takes commands."""
        joined = await synapse_compat.rooms_for_user(self._api, self.user_id)
        return joined | await synapse_compat.rooms_invited_to(self._api, self.user_id)

    async def membership(self, room_id: str) -> str | None:
        state = await self._api.get_room_state(room_id, [("m.room.member", self.user_id)])
        event = state.get(("m.room.member", self.user_id))
        return None if event is None else str(event.content.get("membership"))

    async def join(self, room_id: str, via: list[str], inviter: str | None = None) -> bool:
        """Join ``room_id``; a local ``inviter`` invites the bot first if needed.

        Returns whether the bot is joined afterwards. Failures are logged, not
        raised: a room that will not have the bot is reported by its status.
        """
        await self.ensure_registered()
        state = await self._api.get_room_state(room_id, join_rules.state_keys(self.user_id))
        membership = join_rules.membership_of(state, self.user_id)
        if membership == "join":
            return True
        # An invite the join does not need would be one more event for every
        # server in the room to persist, at every activation.
        needs_invite = membership != "invite" and not join_rules.is_public(state)
        if inviter is not None and needs_invite and self._api.is_mine(inviter):
            try:
                await self._api.update_room_membership(inviter, self.user_id, room_id, "invite")
            except SynapseError as e:
                logger.info("%s could not invite %s to %s: %s", inviter, self.user_id, room_id, e)
        else:
            refusal = join_rules.refusal(state, self.user_id)
            if refusal is not None:
                logger.info("Ferry bot cannot join %s: %s", room_id, refusal.value)
                return False
        for attempt in range(1, _JOIN_ATTEMPTS + 1):
            try:
                await self._api.update_room_membership(
                    self.user_id, self.user_id, room_id, "join", remote_room_hosts=via
                )
                return True
            except Exception as e:
                # Not only SynapseError: a join over federation can fail with
                # Synapse's HTTP and connection errors, and this method
                # promises to log failures rather than raise them.
                # Two processes may join at once (an admin request on a client
                # worker, the invite acceptor on the acting one); the loser is
                # refused, yet the bot is in. Look again before giving up.
                await self._api.sleep(_JOIN_RETRY_SECONDS)
                membership = await self.membership(room_id)
                if membership == "join":
                    return True
                # Still invited: the refusal was the race, so try again. Not
                # invited at all: final, and the caller says why.
                if attempt == _JOIN_ATTEMPTS or membership != "invite":
                    logger.info("Ferry bot could not join %s (via %s): %s", room_id, via, e)
                    return False
        return False

    async def accept_invite(self, room_id: str, inviter: str) -> bool:
        """Join a room the bot was invited to, through the inviter's server.

        Accepting is what lets an admin of a room on another server approve
        with a chat command, or lets this server see that room's consent.
        """
        server = server_of(inviter)
        return await self.join(room_id, [server] if server else [])

    async def leave(self, room_id: str) -> None:
        try:
            await self._api.update_room_membership(self.user_id, self.user_id, room_id, "leave")
        except SynapseError as e:
            logger.info("Ferry bot could not leave %s: %s", room_id, e)

    async def notice(self, room_id: str, text: str, reply_to: str | None = None) -> None:
        """Post ``text`` (a text of ``notices``, commands marked) as a notice."""
        shown = rendered(text)
        content: dict[str, Any] = {
            "msgtype": "m.notice",
            "body": shown.body,
            "format": "org.matrix.custom.html",
            "formatted_body": shown.html,
            # Names in the text (a room's, an admin's) notify nobody.
            "m.mentions": {},
        }
        if reply_to is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        try:
            await self._api.create_and_send_event_into_room(
                {
                    "type": "m.room.message",
                    "room_id": room_id,
                    "sender": self.user_id,
                    "content": content,
                }
            )
        except SynapseError as e:
            logger.warning("Ferry bot could not post a notice in %s: %s", room_id, e)
