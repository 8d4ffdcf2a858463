"""Whether a request can reach the other room, and the requester's notice saying so.

The other room's admins only hear of a request once the bot is in their room
(their server may not even be in the requesting room), so a request the bot
cannot carry there must tell the requester why and who has to do what.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_room_connect.bot import join_rules, notices
from synapse_room_connect.bot.notices import JoinRefusal
from synapse_room_connect.bot.room_names import room_names
from synapse_room_connect.core.matrix import server_of

logger = logging.getLogger(__name__)


@attrs.frozen
class Undeliverable:
    refusal: JoinRefusal
    detail: str


def classify_join_error(error: Exception) -> Undeliverable:
    """Why a join failed, from Synapse's error: 403 is the room's rules (not
    invited, or banned); 404 and 502 are no server that knows the room."""
    if not isinstance(error, SynapseError):
        return Undeliverable(JoinRefusal.OTHER, str(error) or type(error).__name__)
    detail = f"{error.code}: {error.msg}"
    if error.code == 403:
        banned = "banned" in error.msg.lower()
        return Undeliverable(JoinRefusal.BANNED if banned else JoinRefusal.NOT_INVITED, detail)
    if error.code in (404, 502, 504):
        return Undeliverable(JoinRefusal.UNREACHABLE, detail)
    return Undeliverable(JoinRefusal.OTHER, detail)


@attrs.define
class RequestDelivery:
    """Composes the notice a requesting room gets (acting process only)."""

    _api: ModuleApi
    _bot_user_id: str

    async def requested_notice(
        self, here: str, other: str, via: Sequence[str], blocked_by: Sequence[str]
    ) -> str:
        this_room = (await room_names(self._api, here)).address
        problem = await self._reach(other, via)
        # After the join, so a room that just let the bot in is named properly.
        label = (await room_names(self._api, other)).label
        if problem is None:
            return notices.requested(label, this_room, self._bot_user_id, blocked_by)
        logger.info(
            "Request %s -> %s cannot be delivered: %s (%s)",
            here,
            other,
            problem.refusal.value,
            problem.detail,
        )
        return notices.request_undeliverable(
            label, this_room, self._bot_user_id, problem.refusal, problem.detail, blocked_by
        )

    async def _reach(self, room_id: str, via: Sequence[str]) -> Undeliverable | None:
        """Have the bot join ``room_id``, so its admins see the request there."""
        bot = self._bot_user_id
        try:
            state = await self._api.get_room_state(room_id, join_rules.state_keys(bot))
        except Exception:
            state = {}  # a room this server has never seen: the join says more
        if join_rules.membership_of(state, bot) == "join":
            return None
        refusal = join_rules.refusal(state, bot)
        if refusal is not None:
            return Undeliverable(refusal, "refused by the room's join rules")
        servers = list(dict.fromkeys([*via, server_of(room_id) or ""]))
        try:
            await self._api.update_room_membership(
                bot, bot, room_id, "join", remote_room_hosts=[s for s in servers if s]
            )
        except Exception as e:
            return classify_join_error(e)
        return None
