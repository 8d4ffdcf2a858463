"""Bringing the bot, the notices and the status cache in line with room state.

Runs on the acting process only. Every reaction is recomputed from both
rooms' current state, so a restart or a missed event is repaired by
reconciling again; the cache's previous row says what changed, which is what
decides whether a notice is due.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs

from synapse_room_connect import metrics
from synapse_room_connect.bot import notices
from synapse_room_connect.bot.room_names import RoomNamer
from synapse_room_connect.connections.reconcile_queue import CONCURRENCY, ReconcileQueue
from synapse_room_connect.connections.status import (
    ActivationPosition,
    Direction,
    PairStatus,
    StateReader,
    connected_rooms,
    derive_pair,
)
from synapse_room_connect.core.ghosts import Senders
from synapse_room_connect.core.handshake import Mode, Status
from synapse_room_connect.core.matrix import server_of
from synapse_room_connect.store import Previous, Store

logger = logging.getLogger(__name__)


class ReconcilerBot(Protocol):
    """The parts of bot/ferry_bot.FerryBot that reconciliation drives."""

    @property
    def user_id(self) -> str: ...

    async def joined_rooms(self) -> frozenset[str]: ...

    async def membership(self, room_id: str) -> str | None: ...

    async def join(self, room_id: str, via: list[str], inviter: str | None = None) -> bool: ...

    async def leave(self, room_id: str) -> None: ...

    async def notice(self, room_id: str, text: str, reply_to: str | None = None) -> None: ...


class ReconcilerHost(Protocol):
    """What reconciliation needs of the homeserver (a ModuleApi fits)."""

    @property
    def server_name(self) -> str: ...

    def get_current_time_msec(self) -> int: ...

    def run_as_background_process(
        self, desc: str, func: Callable[[], Awaitable[None]]
    ) -> object: ...


class Upgrades(Protocol):
    """Carrying a room's connections over to its successor (upgrade_follow.py)."""

    async def follow(self, old_room: str) -> None: ...


class Announcements(Protocol):
    """Which requests the asked room was told of (connections/request_announcements.py)."""

    async def announced(self, room_id: str, other_room_id: str, request_event_id: str) -> bool: ...

    async def record(self, room_id: str, other_room_id: str, request_event_id: str) -> None: ...


# The requester's notice for (here, other, via, blocked_by): whether the bot
# could reach the other room, and what its admins must do if not
# (delivery.RequestDelivery.requested_notice).
RequestNotice = Callable[[str, str, Sequence[str], Sequence[str]], Awaitable[str]]


async def _room_id(room_id: str) -> str:
    return room_id


@attrs.define
class Reconciler:
    _host: ReconcilerHost
    _store: Store
    _reader: StateReader
    _bot: ReconcilerBot
    _label: RoomNamer = attrs.field(kw_only=True)
    _activation_position: ActivationPosition = attrs.field(kw_only=True)
    _on_connections_changed: Callable[[], None] = attrs.field(kw_only=True)
    _approve_power_level: int = attrs.field(kw_only=True)
    _upgrades: Upgrades | None = attrs.field(kw_only=True, default=None)
    _request_notice: RequestNotice | None = attrs.field(kw_only=True, default=None)
    # A room as commands name it: its alias, else its ID (bot/room_names.room_address).
    _address: RoomNamer = attrs.field(kw_only=True, default=_room_id)
    # Without it, a request is announced only when it appears, so a room
    # that lets the bot in later never hears of it.
    _announcements: Announcements | None = attrs.field(kw_only=True, default=None)
    # Pairs reconciled at once (connections/reconcile_queue.py).
    _concurrency: int = attrs.field(kw_only=True, default=CONCURRENCY)
    _queue: ReconcileQueue = attrs.field(init=False)
    # (source, target): the ghosts of the source room's people leave the
    # target, as nothing crosses between them any more (bot/ghosts.py).
    _ghosts_leave: Callable[[str, str], Awaitable[None]] | None = attrs.field(
        kw_only=True, default=None
    )
    # Tombstoned rooms being followed now: a live tombstone and start-up's
    # pass must not follow one room twice at once.
    _following: set[str] = attrs.field(init=False, factory=set)
    # Rooms start-up queued, until the queue first runs dry after it.
    _startup_rooms: int | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        partners = functools.partial(connected_rooms, self._reader, self._store)
        self._queue = ReconcileQueue(
            self._host,
            partners,
            self.reconcile_pair,
            self._concurrency,
            on_idle=self._startup_done,
        )

    def room_changed(self, room_id: str) -> None:
        """Queue ``room_id`` for reconciliation; cheap, safe from the feed."""
        self._queue.room_changed(room_id)

    def room_upgraded(self, room_id: str) -> None:
        """A tombstone in ``room_id``: its connections end, its successor's begin."""
        self.room_changed(room_id)
        self._follow(room_id)

    def _follow(self, room_id: str) -> None:
        if self._upgrades is None or room_id in self._following:
            return
        self._following.add(room_id)
        follow = functools.partial(self._follow_upgrade, self._upgrades, room_id)
        self._host.run_as_background_process("room_connect_upgrade", follow)

    async def _follow_upgrade(self, upgrades: Upgrades, room_id: str) -> None:
        try:
            await upgrades.follow(room_id)
        except Exception:
            logger.exception("Failed to carry the connections of %s over to its successor", room_id)
        finally:
            self._following.discard(room_id)

    async def reconcile_all(self) -> None:
        """At start-up: every room with a connection or the bot, and the
        follow-ups of upgrades a restart cut short (upgrade_follow.py)."""
        rooms = {row.room_id for row in await self._store.cached_connections()}
        rooms.update(await self._bot.joined_rooms())
        self._startup_rooms = len(rooms)
        for room_id in rooms:
            self.room_changed(room_id)
        if not rooms:
            self._startup_done()
        if self._upgrades is None:
            return
        for room_id in sorted(rooms):
            try:
                tombstoned = (await self._reader.link(room_id)).tombstoned
            except Exception:
                logger.exception("Could not read whether %s was upgraded", room_id)
                continue
            if tombstoned:
                self._follow(room_id)

    def _startup_done(self) -> None:
        # Until this line, notices a restart owes (requests a room let the
        # bot in for while this process was down) may still be coming.
        if self._startup_rooms is not None:
            logger.info("Start-up reconciliation done: %d room(s)", self._startup_rooms)
            self._startup_rooms = None

    async def reconcile_pair(self, a: str, b: str) -> None:
        """Bring the pair in line with state. Only the queue calls this: it
        never runs two reconciliations that share a room at once."""
        pair = await derive_pair(self._reader, a, b)
        now = self._host.get_current_time_msec()
        prev_a = await self._swap(pair.a, pair.mode, now)
        prev_b = await self._swap(pair.b, pair.mode, now)
        if self._bot.user_id not in pair.ferries() | {prev_a.ferry, prev_b.ferry}:
            return  # another server's ferry carries this connection
        changed = False
        for prev, direction in ((prev_a, pair.a), (prev_b, pair.b)):
            if prev.status is not direction.verdict.status:
                changed = True
                metrics.transitions.labels(
                    self._host.server_name, direction.verdict.status.value
                ).inc()
        # The ferry reads who sends into each room from the cache it loads
        # on a change, so a consent that changed only that is one too.
        senders_changed = any(
            prev.senders != _senders_into(direction)
            for prev, direction in ((prev_a, pair.a), (prev_b, pair.b))
        )
        if senders_changed and not changed:
            self._on_connections_changed()
        if changed:
            if pair.a.verdict.status is Status.ACTIVE:
                since = await self._activation_position(pair.a.here, pair.b.here)
                await self._store.set_active_since(a, b, since)
                await self._store.set_active_since(b, a, since)
            self._on_connections_changed()
            logger.info(
                "Connection %s <-> %s: %s/%s -> %s/%s",
                a,
                b,
                prev_a.status and prev_a.status.value,
                prev_b.status and prev_b.status.value,
                pair.a.verdict.status.value,
                pair.b.verdict.status.value,
            )
        await self._act(pair.a, prev_a.status, pair.mode)
        await self._act(pair.b, prev_b.status, pair.mode)
        await self._announce_mode_switch(pair, prev_a)

    async def _swap(self, direction: Direction, mode: Mode, now: int) -> Previous:
        return await self._store.swap_connection(
            direction.room_id,
            direction.other_room_id,
            direction.verdict.status,
            direction.verdict.ferry,
            direction.via,
            mode,
            now,
            _senders_into(direction),
        )

    async def _act(self, direction: Direction, old: Status | None, mode: Mode) -> None:
        """Bring the bot's presence and this room's notices in line with the verdict."""
        here, other = direction.room_id, direction.other_room_id
        verdict = direction.verdict
        if not direction.here.visible and verdict.status is not Status.ACTIVE:
            return
        changed = old is not verdict.status
        consent = direction.here.consent
        inviter = consent.sender if consent is not None else None
        via = _join_via(direction)
        status = verdict.status
        if status is Status.ACTIVE or (status is Status.REQUESTED and inviter is not None):
            joined = await self._bot.join(here, via, inviter)
            if not joined or not changed:
                return
            if status is not Status.ACTIVE and _inherited(direction):
                return  # a room was upgraded: upgrade_follow.py tells the rooms
            label = await self._label(other)
            if status is Status.ACTIVE:
                await self._bot.notice(here, notices.connected(label, mode))
            elif old is Status.ACTIVE and verdict.blocked_by:
                # A room changed (e.g. turned on encryption) under a live
                # connection: say why it stopped rather than re-announcing a request.
                await self._bot.notice(here, notices.paused(label, verdict.blocked_by))
            elif self._request_notice is not None and consent is not None:
                text = await self._request_notice(here, other, consent.via, verdict.blocked_by)
                await self._bot.notice(here, text)
            else:
                text = notices.requested(label, here, self._bot.user_id, verdict.blocked_by)
                await self._bot.notice(here, text)
        elif status is Status.INCOMING:
            await self._announce_request(direction, via, changed)
        elif status is Status.REVOKED:
            if self._ghosts_leave is not None:
                await self._ghosts_leave(other, here)
            was_live = old in (Status.ACTIVE, Status.REQUESTED, Status.INCOMING)
            if direction.here_upgraded_to is not None:
                # The bot cannot post in a tombstoned room, and stays so the
                # upgrade chain stays readable to this server.
                return
            if changed and was_live and await self._bot.membership(here) == "join":
                label = await self._label(other)
                successor = direction.there_upgraded_to
                text = (
                    notices.ended(label)
                    if successor is None
                    else notices.upgraded(label, await self._label(successor))
                )
                await self._bot.notice(here, text)
            if direction.there_upgraded_to is None:
                # Otherwise the bot stays for the connection with the successor.
                await self._leave_if_unneeded(here)

    async def _announce_request(self, direction: Direction, via: list[str], changed: bool) -> None:
        """Tell the asked room of a request, with the command that approves it.

        Only rooms that let the bot in (public, or it was invited) hear about
        a request; nobody can make the bot enter a private room. An admin
        there who invites the bot later (the requester's notice asks them
        to) hears of it then: the bot's join reconciles the room again, and
        the request, not yet announced there, is announced once."""
        here, other = direction.room_id, direction.other_room_id
        request = direction.there.consent
        inherited = _inherited(direction)
        announcements = self._announcements
        if request is None or (not changed and (announcements is None or inherited)):
            return
        if announcements is not None and await announcements.announced(
            here, other, request.event_id
        ):
            return
        if not await self._bot.join(here, via, None) or inherited:
            return  # inherited: a room was upgraded, upgrade_follow.py tells the rooms
        label = await self._label(other)
        text = notices.incoming(label, await self._address(other), self._approve_power_level)
        await self._bot.notice(here, text)
        if announcements is not None:
            await announcements.record(here, other, request.event_id)

    async def _announce_mode_switch(self, pair: PairStatus, prev_a: Previous) -> None:
        stayed_active = pair.a.verdict.status is Status.ACTIVE and prev_a.status is Status.ACTIVE
        if not stayed_active or prev_a.mode is None or prev_a.mode is pair.mode:
            return
        for direction in (pair.a, pair.b):
            here, other = direction.room_id, direction.other_room_id
            text = notices.mode_switched(await self._label(other), pair.mode)
            logger.info("Connection %s -> %s switched to mode %s", here, other, pair.mode.value)
            if await self._bot.membership(here) == "join":
                await self._bot.notice(here, text)

    async def _leave_if_unneeded(self, room_id: str) -> None:
        if await self._bot.membership(room_id) != "join":
            return
        for row in await self._store.cached_connections(room_id):
            if row.ferry == self._bot.user_id and row.status is not Status.REVOKED:
                return
        await self._bot.leave(room_id)


def _senders_into(direction: Direction) -> Senders | None:
    """Who the other room's consent wants to send what this direction
    carries into it; None: the ferry's default."""
    consent = direction.there.consent
    return None if consent is None else consent.senders


def _inherited(direction: Direction) -> bool:
    """Whether a consent counts for this pair only through a room upgrade."""
    here, there = direction.here.consent, direction.there.consent
    return (here is not None and here.other_room_id != direction.other_room_id) or (
        there is not None and there.other_room_id != direction.room_id
    )


def _join_via(direction: Direction) -> list[str]:
    """Servers to join ``direction.room_id`` through, best guess first."""
    servers: list[str] = []
    if direction.there.consent is not None:
        servers.extend(direction.there.consent.via)
    if direction.here.consent is not None:
        servers.append(server_of(direction.here.consent.sender) or "")
    servers.append(server_of(direction.room_id) or "")
    return list(dict.fromkeys(s for s in servers if s))
