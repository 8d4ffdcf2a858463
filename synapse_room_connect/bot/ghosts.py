"""Ghosts: a local account per (person, room they write in) that sends what
that person says into the rooms connected to theirs, so each author shows as
their own sender, named "Bob (Annex)" with Bob's avatar.

A ghost is registered on first use, quietly (synapse_compat/ghosts.py: no
password, no directory entry, no auto-joined rooms, notifications off where
this process can turn them off). It joins a target room at its first
counterpart there, invited by the bot where the join rule asks for an
invite; where it cannot get in, that person's counterparts go from the bot
instead (with the name in the text), and the room is told once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection
from typing import Any, Final, Literal

from synapse.module_api import EventBase, ModuleApi, UserProfile
from synapse.module_api.errors import Codes

from synapse_room_connect import synapse_compat
from synapse_room_connect.bot import join_rules, notices
from synapse_room_connect.bot.ferry_bot import FerryBot
from synapse_room_connect.bot.room_names import room_names
from synapse_room_connect.core.ghosts import GhostNamespace, ghost_displayname, room_part
from synapse_room_connect.store import GhostRecord, Store

logger = logging.getLogger(__name__)

# A ghost a room refused is not tried again there for this long.
REFUSAL_RETRY_MS: Final = 10 * 60 * 1000
_CACHE_SIZE: Final = 10_000
# How long a person's name and avatar as their ghost shows them are taken as
# read: each counterpart asks, and two state reads per message cost ghosts
# measurably more CPU than the bot. A change of the person's own member event
# is followed at once (person_changed); a renamed room reaches its ghosts'
# names within this time.
PROFILE_TTL_MS: Final = 30_000


class Ghosts:
    def __init__(
        self,
        api: ModuleApi,
        store: Store,
        bot: FerryBot,
        namespace: GhostNamespace,
        device_id: str,
    ) -> None:
        self._api = api
        self._store = store
        self._bot = bot
        self.namespace = namespace
        self._device_id = device_id
        # Ghosts known registered, with their profile as last set.
        self._known: OrderedDict[str, GhostRecord] = OrderedDict()
        # (person, room) -> (read at, (name, avatar)) as _profile read them.
        self._profiles: OrderedDict[tuple[str, str], tuple[int, tuple[str, str | None]]] = (
            OrderedDict()
        )
        # (ghost, room) -> when the room refused the ghost.
        self._refused: dict[tuple[str, str], int] = {}

    def is_ghost(self, user_id: str) -> bool:
        return self.namespace.contains(user_id)

    async def person_of(self, ghost_id: str) -> str | None:
        """Whom one of this server's ghosts speaks for; None for anyone else."""
        if not self.is_ghost(ghost_id):
            return None
        known = self._known.get(ghost_id)
        if known is not None:
            return known.user_id
        owner = await self._store.ghost_owner(ghost_id)
        return None if owner is None else owner[0]

    async def sender_into(
        self, user_id: str, room_id: str, target: str, event_type: str = "m.room.message"
    ) -> str | None:
        """The ghost of ``user_id`` of ``room_id``, joined to ``target`` if it
        was not; None when it cannot be, or may not send ``event_type`` there
        (the bot sends instead)."""
        ghost_id = self.namespace.user_id_for(user_id, room_id)
        refused_at = self._refused.get((ghost_id, target))
        now = self._api.get_current_time_msec()
        if refused_at is not None and now - refused_at < REFUSAL_RETRY_MS:
            return None
        try:
            await self.ghost_for(user_id, room_id)
            joined = await self._join(ghost_id, target, event_type)
        except Exception:
            logger.exception("Ghost %s could not be made ready for %s", ghost_id, target)
            joined = False
        if joined:
            self._refused.pop((ghost_id, target), None)
            return ghost_id
        self._refused[(ghost_id, target)] = now
        if await self._store.ghost_notice_due(target, now):
            await self._bot.notice(target, notices.ghosts_refused(self._bot.user_id))
        return None

    async def ready_in(self, ghost_id: str, target: str, event_type: str) -> bool:
        """Whether a ghost that already sent into ``target`` can send there
        again (joining it again, if it left when a connection ended)."""
        try:
            return await self._join(ghost_id, target, event_type)
        except Exception:
            logger.exception("Ghost %s could not be made ready for %s", ghost_id, target)
            return False

    async def ghost_for(self, user_id: str, room_id: str, *, fresh: bool = False) -> GhostRecord:
        """The ghost of ``user_id`` of ``room_id``, registered, with the
        person's current name and avatar there."""
        ghost_id = self.namespace.user_id_for(user_id, room_id)
        name, avatar = await self._recent_profile(user_id, room_id, fresh)
        known = self._known.get(ghost_id)
        if known is None:
            # Synapse caches whether a user exists: a new ghost costs no read
            # of the module's table.
            exists = await self._api.check_user_exists(ghost_id) is not None
            known = await self._store.ghost(ghost_id) if exists else None
            if known is None:
                known = await self._register(ghost_id, user_id, room_id, name, avatar, exists)
            self._remember(known)
        if (known.displayname, known.avatar_url) != (name, avatar):
            known = await self._update_profile(known, name, avatar)
        self._known.move_to_end(ghost_id)
        return known

    async def person_changed(self, room_id: str, user_id: str) -> None:
        """The person's member event in ``room_id`` changed: if they have a
        ghost there, its name and avatar follow."""
        record = await self._store.ghost_of(user_id, room_id)
        if record is None:
            return
        self._remember(record)
        await self.ghost_for(user_id, room_id, fresh=True)

    async def leave(self, source: str, target: str) -> None:
        """Ghosts of ``source``'s people leave ``target``: nothing crosses
        from ``source`` into it any more. Each ghost is for one source room,
        so no other connection needs it there."""
        joined = await self._store.ghosts_joined(target, self.namespace.like_pattern())
        for ghost_id in joined:
            owner = await self._store.ghost_owner(ghost_id)
            if owner is None or owner[1] != source:
                continue
            try:
                await self._api.update_room_membership(ghost_id, ghost_id, target, "leave")
            except Exception as e:
                logger.info("Ghost %s could not leave %s: %s", ghost_id, target, e)

    async def _recent_profile(
        self, user_id: str, room_id: str, fresh: bool
    ) -> tuple[str, str | None]:
        """``_profile``, read again only after ``PROFILE_TTL_MS`` (or when
        ``fresh``)."""
        key = (user_id, room_id)
        now = self._api.get_current_time_msec()
        cached = None if fresh else self._profiles.get(key)
        if cached is not None and now - cached[0] < PROFILE_TTL_MS:
            return cached[1]
        profile = await self._profile(user_id, room_id)
        self._profiles[key] = (now, profile)
        self._profiles.move_to_end(key)
        if len(self._profiles) > _CACHE_SIZE:
            self._profiles.popitem(last=False)
        return profile

    async def _profile(self, user_id: str, room_id: str) -> tuple[str, str | None]:
        key = ("m.room.member", user_id)
        member = (await self._api.get_room_state(room_id, [key])).get(key)
        name = member.content.get("displayname") if member is not None else None
        avatar = member.content.get("avatar_url") if member is not None else None
        names = await room_names(self._api, room_id)
        shown = ghost_displayname(
            name if isinstance(name, str) else None,
            user_id,
            room_part(names.name, names.alias, room_id),
        )
        # mxc URIs name media across servers; anything else is no avatar.
        return shown, avatar if isinstance(avatar, str) and avatar.startswith("mxc://") else None

    async def _register(
        self,
        ghost_id: str,
        user_id: str,
        room_id: str,
        name: str,
        avatar: str | None,
        exists: bool,
    ) -> GhostRecord:
        if not exists:
            try:
                await synapse_compat.register_ghost(self._api, ghost_id, name)
                logger.info("Registered ghost %s for %s in %s", ghost_id, user_id, room_id)
            except Exception:
                # Another ferry process may have registered it just now.
                if await self._api.check_user_exists(ghost_id) is None:
                    raise
        await synapse_compat.ensure_device(self._api, ghost_id, self._device_id, "MSC2923 ferry")
        # Nobody reads a ghost's notifications: spare Synapse computing them.
        await synapse_compat.mute_pushes(self._api, ghost_id)
        # Not in any room yet: nothing to propagate (the name came with the
        # registration).
        if avatar is not None:
            await synapse_compat.set_avatar(self._api, ghost_id, avatar, propagate=False)
        record = GhostRecord(ghost_id, user_id, room_id, name, avatar)
        await self._store.record_ghost(record, self._api.get_current_time_msec())
        return record

    async def _update_profile(
        self, known: GhostRecord, name: str, avatar: str | None
    ) -> GhostRecord:
        ghost_id = known.ghost_user_id
        # Each change re-sends the ghost's member events in its rooms.
        if name != known.displayname:
            await synapse_compat.set_displayname(self._api, ghost_id, name, propagate=True)
        if avatar != known.avatar_url:
            await synapse_compat.set_avatar(self._api, ghost_id, avatar or "", propagate=True)
        record = GhostRecord(ghost_id, known.user_id, known.room_id, name, avatar)
        await self._store.record_ghost(record, self._api.get_current_time_msec())
        self._remember(record)
        logger.info("Ghost %s now shows as %r", ghost_id, name)
        return record

    def _remember(self, record: GhostRecord) -> None:
        self._known[record.ghost_user_id] = record
        self._known.move_to_end(record.ghost_user_id)
        if len(self._known) > _CACHE_SIZE:
            self._known.popitem(last=False)

    def _may_send(
        self, state: dict[tuple[str, str], EventBase], ghost_id: str, target: str, event_type: str
    ) -> bool:
        """Whether the room's power levels let the ghost send ``event_type``
        (a room where only moderators speak still hears the bot)."""
        levels = state.get(("m.room.power_levels", ""))
        if levels is None:
            return True
        events = levels.content.get("events")
        needed = events.get(event_type) if isinstance(events, dict) else None
        if needed is None:
            needed = levels.content.get("events_default", 0)
        try:
            required = int(needed)
        except (TypeError, ValueError):
            return True  # Synapse's own auth check decides then
        if synapse_compat.power_in_state(state, ghost_id) >= required:
            return True
        logger.info("Ghost %s may not send %s in %s", ghost_id, event_type, target)
        return False

    async def _join(self, ghost_id: str, target: str, event_type: str) -> bool:
        """Whether the ghost is in ``target`` (after joining it if it was not)
        and may send ``event_type`` there; one state read when it is."""
        keys = [
            *join_rules.state_keys(ghost_id),
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
        ]
        state = dict(await self._api.get_room_state(target, keys))
        if not self._may_send(state, ghost_id, target, event_type):
            return False
        membership = join_rules.membership_of(state, ghost_id)
        if membership == "join":
            return True
        if membership == "ban":
            logger.info("Ghost %s is banned from %s", ghost_id, target)
            return False
        if not join_rules.is_public(state) and membership != "invite":
            try:
                await self._api.update_room_membership(
                    self._bot.user_id, ghost_id, target, "invite"
                )
            except Exception as e:
                logger.info("The bot could not invite ghost %s to %s: %s", ghost_id, target, e)
                return False
        try:
            await self._api.update_room_membership(ghost_id, ghost_id, target, "join")
        except Exception as e:
            logger.info("Ghost %s could not join %s: %s", ghost_id, target, e)
            return False
        return True


class GhostGuard:
    """Keeps the namespace the module's: Synapse's spam-checker callbacks,
    on every process. The module registers its ghosts without these checks
    (synapse_compat.register_ghost), so nobody else gets past them."""

    def __init__(self, namespace: GhostNamespace) -> None:
        self._namespace = namespace

    async def check_registration_for_spam(
        self,
        email_threepid: dict[str, Any] | None,
        username: str | None,
        request_info: Collection[tuple[str, str]],
        auth_provider_id: str | None = None,
    ) -> Any:
        reserved = username is not None and self._namespace.localpart_reserved(username.lower())
        if reserved:
            logger.info("Refused registration of %r: the ghost namespace is reserved", username)
        return synapse_compat.registration_verdict(not reserved)

    async def check_login_for_spam(
        self,
        user_id: str,
        device_id: str | None,
        initial_display_name: str | None,
        request_info: Collection[tuple[str | None, str]],
        auth_provider_id: str | None = None,
    ) -> Literal["NOT_SPAM"] | Codes:
        if self._namespace.contains(user_id):
            logger.info("Refused a login as ghost %s", user_id)
            return Codes.FORBIDDEN
        return "NOT_SPAM"

    async def check_username_for_spam(self, user_profile: UserProfile, requester_id: str) -> bool:
        """True hides the user from user directory searches."""
        return self._namespace.contains(user_profile["user_id"])
