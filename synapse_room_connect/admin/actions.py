"""A homeserver admin acting for a room: connect or revoke on its behalf.

A bridge's portal room is administered by the bridge's bot (in room version
12 as its creator), so no person in it can consent. The homeserver admin may
then act for the room, but only through the room's own authority: the action
is taken as the room's most powerful local member, who must hold
``approve_power_level`` as any consenting admin must. Room state stays the
only record of consent; the admin's part is told in a notice, a log line and
a metric.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence

import attrs
from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_room_connect import metrics, synapse_compat
from synapse_room_connect.bot import notices
from synapse_room_connect.bot.ferry_bot import FerryBot
from synapse_room_connect.bot.room_names import room_label
from synapse_room_connect.connections.actions import ConnectionActions
from synapse_room_connect.connections.rooms import RoomReader
from synapse_room_connect.connections.status import ConnectionView, side_toward, upgraded_to

logger = logging.getLogger(__name__)


class AdminAction(enum.Enum):
    CONNECT = "connect"
    REVOKE = "revoke"


# The log line of a done action: admin, room, other room, acting member.
_DONE_LOG = {
    AdminAction.CONNECT: "Homeserver admin %s asked to connect %s to %s, acting as %s",
    AdminAction.REVOKE: "Homeserver admin %s revoked the connection %s -> %s, acting as %s",
}


@attrs.frozen
class Member:
    """A local member of a room and their power level there."""

    user_id: str
    power: int


async def local_members_by_power(
    api: ModuleApi, room_id: str, exclude: Iterable[str] = ()
) -> list[Member]:
    """The room's joined local members, most powerful first (ties by user ID)."""
    state = dict(
        await api.get_room_state(
            room_id,
            [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", None)],
        )
    )
    skip = set(exclude)
    members = [
        Member(user_id, synapse_compat.power_in_state(state, user_id))
        for (etype, user_id), event in state.items()
        if etype == "m.room.member"
        and event.content.get("membership") == "join"
        and api.is_mine(user_id)
        and user_id not in skip
    ]
    return sorted(members, key=lambda m: (-m.power, m.user_id))


class AdminActions:
    """Connect and revoke on behalf of a room, for a homeserver admin."""

    def __init__(
        self, api: ModuleApi, actions: ConnectionActions, bot: FerryBot, threshold: int
    ) -> None:
        self._api = api
        self._actions = actions
        self._bot = bot
        self._threshold = threshold
        self._reader = RoomReader(api, threshold)

    async def acting_member(self, room_id: str) -> Member:
        """The member the admin acts as; a clear error when none may consent."""
        if not await synapse_compat.server_in_room(self._api, room_id):
            raise SynapseError(
                400,
                f"{self._api.server_name} is not in {room_id}: a homeserver admin can act "
                "only for a room one of this server's users is joined to.",
                Codes.INVALID_PARAM,
            )
        # The ferry bot is no admin of its own: consent must come from the room.
        members = await local_members_by_power(self._api, room_id, [self._bot.user_id])
        if not members or members[0].power < self._threshold:
            best = f"; the most powerful is {members[0].user_id} with {members[0].power}"
            raise SynapseError(
                403,
                f"No local member of {room_id} has power level {self._threshold}, which "
                "changing its connections needs"
                + (best if members else "; none of its members is local")
                + ". Grant that level to a local member first.",
                Codes.FORBIDDEN,
            )
        return members[0]

    async def connect(
        self,
        admin: str,
        room_id: str,
        other_ref: str,
        via: Sequence[str],
        acknowledge: Iterable[str],
    ) -> ConnectionView:
        """Request (or approve) a connection from ``room_id`` to ``other_ref``."""
        try:
            member = await self.acting_member(room_id)
            view = await self._actions.request(member.user_id, room_id, other_ref, via, acknowledge)
        except SynapseError as e:
            self._refused(AdminAction.CONNECT, admin, room_id, e)
            raise
        self._done(AdminAction.CONNECT, admin, room_id, other_ref, member)
        if view.ferry == self._bot.user_id:
            # The bot joins rooms it ferries for anyway; the acting member's
            # invite lets it in now, so the notice lands with the request.
            await self._bot.join(room_id, [self._api.server_name], member.user_id)
        label = await room_label(self._api, view.other_room_id)
        text = notices.admin_connecting(admin, self._api.server_name, member.user_id, label)
        await self._notify(room_id, text)
        return view

    async def revoke(self, admin: str, room_id: str, other_room_id: str) -> ConnectionView:
        """End ``room_id``'s side of its connection to ``other_room_id``."""
        try:
            member = await self.acting_member(room_id)
            await self._require_connection(room_id, other_room_id)
        except SynapseError as e:
            self._refused(AdminAction.REVOKE, admin, room_id, e)
            raise
        # Told before acting: once revoked, the bot leaves a room it no
        # longer ferries for, and could not say who ended the connection.
        label = await room_label(self._api, other_room_id)
        text = notices.admin_revoking(admin, self._api.server_name, member.user_id, label)
        await self._notify(room_id, text)
        try:
            view = await self._actions.revoke(member.user_id, room_id, other_room_id)
        except SynapseError as e:
            self._refused(AdminAction.REVOKE, admin, room_id, e)
            raise
        self._done(AdminAction.REVOKE, admin, room_id, other_room_id, member)
        return view

    async def _require_connection(self, room_id: str, other_room_id: str) -> None:
        # After an upgrade of the other room its current room is named, while
        # the consent here still names the room it was given to: it counts
        # for that room's successors (docs/msc2923.md, section 12).
        if (await side_toward(self._reader, room_id, other_room_id)).consent is not None:
            return
        successor = await upgraded_to(self._reader, room_id)
        text = (
            notices.no_connection(room_id, other_room_id)
            if successor is None
            else notices.room_was_upgraded(room_id, successor)
        )
        raise SynapseError(404, text, Codes.NOT_FOUND)

    async def _notify(self, room_id: str, text: str) -> None:
        if await self._bot.membership(room_id) == "join":
            await self._bot.notice(room_id, text)

    def _record(self, action: AdminAction, outcome: str) -> None:
        metrics.admin_actions.labels(self._api.server_name, action.value, outcome).inc()

    def _done(
        self, action: AdminAction, admin: str, room_id: str, other: str, member: Member
    ) -> None:
        self._record(action, "done")
        logger.info(_DONE_LOG[action], admin, room_id, other, member.user_id)

    def _refused(self, action: AdminAction, admin: str, room_id: str, error: SynapseError) -> None:
        self._record(action, "refused")
        logger.info(
            "Refused homeserver admin %s's %s for %s: %s", admin, action.value, room_id, error.msg
        )
