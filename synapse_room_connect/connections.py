"""Connection lifecycle: request, approve, revoke, and reacting to state.

Room state is the source of truth. Every action here ends in a state event
sent as the acting admin; every reaction (bot joins, notices, the status
cache) is recomputed from state by ``reconcile`` on the acting process, so a
restart or a missed event is repaired by reconciling again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from synapse.api.errors import Codes, SynapseError
from synapse.module_api import EventBase, ModuleApi, RoomID
from synapse.util.frozenutils import unfreeze

from synapse_room_connect import metrics, synapse_compat
from synapse_room_connect.bot import FerryBot
from synapse_room_connect.commands import (
    HELP_TEXT,
    Command,
    CommandError,
    Verb,
    parse_command,
)
from synapse_room_connect.config import RoomConnectConfig
from synapse_room_connect.constants import (
    ACK_ENCRYPTION,
    ACK_VISIBILITY,
    CONNECTION_EVENT_TYPE,
)
from synapse_room_connect.ferry import Ferry
from synapse_room_connect.handshake import (
    ContentError,
    Mode,
    Side,
    Status,
    Verdict,
    derive,
    is_empty_content,
    mode_for,
    traits_mismatch,
    validate_content,
)
from synapse_room_connect.rooms import (
    RoomReader,
    StateMap,
    room_label,
    server_of,
    traits_from_state,
)
from synapse_room_connect.store import Store

logger = logging.getLogger(__name__)

_ACK_REASONS = {
    ACK_ENCRYPTION: "one room is end-to-end encrypted and the other is not",
    ACK_VISIBILITY: "one room is public or world-readable and the other is not",
}


@attrs.frozen
class ConnectionView:
    """A connection as one room sees it, for REST answers and notices."""

    room_id: str
    other_room_id: str
    status: Status
    ferry: str | None
    via: tuple[str, ...]
    mode: Mode
    blocked_by: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "room_id": self.other_room_id,
            "status": self.status.value,
            "ferry": self.ferry,
            "via": list(self.via),
            "mode": self.mode.value,
        }
        if self.blocked_by:
            body["blocked_by"] = list(self.blocked_by)
        return body


class Connections:
    def __init__(
        self,
        api: ModuleApi,
        config: RoomConnectConfig,
        store: Store,
        bot: FerryBot,
    ) -> None:
        self._api = api
        self._config = config
        self._store = store
        self._bot = bot
        self._reader = RoomReader(api, config.approve_power_level)
        self.ferry = Ferry(api, config, store, bot, self._reader, self._label)
        self._pending: set[str] = set()
        self._draining = False

    # ------------------------------------------------------------------
    # Deriving status (any process)

    async def view(self, room_id: str, other_room_id: str) -> ConnectionView:
        here = await self._reader.side(room_id, other_room_id)
        there = await self._reader.side(other_room_id, room_id)
        traits_here = await self._reader.traits(room_id)
        traits_there = await self._reader.traits(other_room_id)
        verdict = derive(here, there, traits_here=traits_here, traits_there=traits_there)
        status = verdict.status
        if not there.visible:
            # This server left (or never joined) the other room; the acting
            # process's last derivation, made while it could see, is better
            # than assuming the other side still consents.
            cached = await self._store.cached_connection(room_id, other_room_id)
            if cached is not None:
                status = cached.status
        return ConnectionView(
            room_id=room_id,
            other_room_id=other_room_id,
            status=status,
            ferry=verdict.ferry,
            via=self._via_to(other_room_id, here, there),
            mode=mode_for(traits_here, traits_there),
            blocked_by=verdict.blocked_by,
        )

    async def list_for(self, room_id: str) -> list[ConnectionView]:
        others = set((await self._reader.connection_events(room_id)).keys())
        others.update(row.other_room_id for row in await self._store.cached_connections(room_id))
        others.discard(room_id)
        return [await self.view(room_id, other) for other in sorted(others)]

    @staticmethod
    def _via_to(other_room_id: str, here: Side, there: Side) -> tuple[str, ...]:
        """Servers that can reach ``other_room_id``, best guess first."""
        if here.consent is not None:
            return here.consent.via
        servers: list[str] = []
        if there.consent is not None:
            servers.append(server_of(there.consent.sender) or "")
        servers.append(server_of(other_room_id) or "")
        return tuple(dict.fromkeys(s for s in servers if s))

    # ------------------------------------------------------------------
    # Send-time validation of local connection events (check_event_allowed)

    def check_local_event(self, event: EventBase, state: StateMap) -> None:
        """Refuse a locally sent connection event that must not enter the room.

        Raises ``SynapseError`` with M_FORBIDDEN or M_BAD_JSON; the client sees
        it as the answer to its send.
        """
        state_key = event.state_key
        assert state_key is not None
        power = synapse_compat.power_in_state(dict(state), event.sender)
        threshold = self._config.approve_power_level
        if power < threshold:
            raise SynapseError(
                403,
                f"Changing this room's connections needs power level {threshold}; "
                f"{event.sender} has {power}.",
                Codes.FORBIDDEN,
            )
        content = unfreeze(event.content)
        if is_empty_content(content):
            return
        try:
            validate_content(content, room_id=event.room_id, state_key=state_key)
        except ContentError as e:
            raise SynapseError(400, f"Invalid connection: {e}", Codes.BAD_JSON) from None
        ferry = content["ferry"]
        if ferry != self._bot.user_id:
            member = state.get(("m.room.member", ferry))
            if member is None or member.content.get("membership") != "join":
                raise SynapseError(
                    403,
                    f"ferry {ferry} is neither this server's ferry bot ({self._bot.user_id}) "
                    "nor a bot joined to this room; invite and join it first.",
                    Codes.FORBIDDEN,
                )
        existing = [
            key
            for (etype, key), ev in state.items()
            if etype == CONNECTION_EVENT_TYPE
            and key != state_key
            and not is_empty_content(ev.content)
        ]
        limit = self._config.limits.connections_per_room
        if len(existing) >= limit:
            raise SynapseError(
                403,
                f"This room already has {len(existing)} connections; the limit is {limit}.",
                Codes.FORBIDDEN,
            )

    async def check_local_event_guard(self, event: EventBase, state: StateMap) -> None:
        """The mismatch guard, for when the other room's state is readable."""
        if is_empty_content(event.content):
            return
        assert event.state_key is not None
        there = await self._reader.traits(event.state_key)
        if there is None:
            return
        here = traits_from_state(state)
        acks = set(event.content.get("acknowledge", ()))
        missing = [ack for ack in traits_mismatch(here, there) if ack not in acks]
        if missing:
            reasons = "; ".join(_ACK_REASONS[m] for m in missing)
            raise SynapseError(
                403,
                f"Refusing to connect these rooms: {reasons}. To connect them anyway, both "
                f"rooms must include acknowledge: {json.dumps(missing)} in their connection "
                "content (or pass --ack-encryption / --ack-visibility to !connect).",
                Codes.FORBIDDEN,
            )

    # ------------------------------------------------------------------
    # Actions on behalf of a local admin (REST and chat commands)

    async def require_power(self, room_id: str, user_id: str) -> None:
        state = await self._api.get_room_state(
            room_id,
            [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", user_id)],
        )
        member = state.get(("m.room.member", user_id))
        if member is None or member.content.get("membership") != "join":
            raise SynapseError(403, f"{user_id} is not joined to {room_id}.", Codes.FORBIDDEN)
        power = synapse_compat.power_in_state(dict(state), user_id)
        threshold = self._config.approve_power_level
        if power < threshold:
            raise SynapseError(
                403,
                f"Changing this room's connections needs power level {threshold}; "
                f"{user_id} has {power}.",
                Codes.FORBIDDEN,
            )

    async def require_member(self, room_id: str, user_id: str) -> None:
        state = await self._api.get_room_state(room_id, [("m.room.member", user_id)])
        member = state.get(("m.room.member", user_id))
        if member is None or member.content.get("membership") != "join":
            raise SynapseError(403, f"{user_id} is not joined to {room_id}.", Codes.FORBIDDEN)

    async def resolve_room(self, ref: str, via: Sequence[str] = ()) -> tuple[str, list[str]]:
        """A room ID and servers to reach it, from an alias or a room ID."""
        if ref.startswith("#"):
            try:
                room_id, servers = await self._api.lookup_room_alias(ref)
            except SynapseError as e:
                raise SynapseError(
                    404, f"Room alias {ref} could not be resolved: {e.msg}", Codes.NOT_FOUND
                ) from None
            return room_id, list(dict.fromkeys([*via, *servers]))
        if not RoomID.is_valid(ref):
            raise SynapseError(
                400, f"{ref!r} is neither a room alias nor a room ID.", Codes.INVALID_PARAM
            )
        servers = list(via)
        if not servers:
            domain = server_of(ref)
            if domain:
                servers.append(domain)
            elif await self._reader.visible(ref):
                servers.append(self._api.server_name)
        if not servers:
            raise SynapseError(
                400,
                f"Say which servers can reach {ref}: pass via, or use an alias.",
                Codes.INVALID_PARAM,
            )
        return ref, servers

    async def request(
        self,
        user_id: str,
        room_id: str,
        other_ref: str,
        via: Sequence[str] = (),
        acknowledge: Iterable[str] = (),
        *,
        require_incoming: bool = False,
    ) -> ConnectionView:
        """Ask to connect ``room_id`` to another room, or approve its request."""
        await self.require_power(room_id, user_id)
        other, servers = await self.resolve_room(other_ref, via)
        if other == room_id:
            raise SynapseError(400, "A room cannot be connected to itself.", Codes.BAD_JSON)
        there = await self._reader.side(other, room_id)
        if require_incoming and there.consent is None:
            hint = (
                ""
                if there.visible
                else f" ({self._api.server_name} is not in that room and cannot see its state)"
            )
            raise SynapseError(
                404, f"{other_ref} has not asked to connect to this room{hint}.", Codes.NOT_FOUND
            )
        ferry = there.consent.ferry if there.consent is not None else self._bot.user_id
        if ferry == self._bot.user_id:
            await self._bot.ensure_registered()
        content: dict[str, Any] = {"room_id": other, "via": servers, "ferry": ferry}
        acks = sorted(set(acknowledge))
        if acks:
            content["acknowledge"] = acks
        await self._send_connection_state(user_id, room_id, other, content)
        return await self.view(room_id, other)

    async def revoke(self, user_id: str, room_id: str, other_ref: str) -> ConnectionView:
        await self.require_power(room_id, user_id)
        other, _ = await self.resolve_room(other_ref, via=[self._api.server_name])
        existing = (await self._reader.connection_events(room_id)).get(other)
        if existing is None or is_empty_content(existing.content):
            raise SynapseError(404, f"This room has no connection to {other_ref}.", Codes.NOT_FOUND)
        await self._send_connection_state(user_id, room_id, other, {})
        return await self.view(room_id, other)

    async def _send_connection_state(
        self, user_id: str, room_id: str, other: str, content: dict[str, Any]
    ) -> None:
        await self._api.create_and_send_event_into_room(
            {
                "type": CONNECTION_EVENT_TYPE,
                "room_id": room_id,
                "sender": user_id,
                "state_key": other,
                "content": content,
            }
        )

    # ------------------------------------------------------------------
    # Reacting to state (acting process only)

    def room_changed(self, room_id: str) -> None:
        """Queue ``room_id`` for reconciliation; cheap, safe from on_new_event."""
        self._pending.add(room_id)
        if not self._draining:
            self._draining = True
            self._api.run_as_background_process("room_connect_reconcile", self._drain)

    async def reconcile_all(self) -> None:
        rooms = {row.room_id for row in await self._store.cached_connections()}
        rooms.update(await self._bot.joined_rooms())
        for room_id in rooms:
            self.room_changed(room_id)

    async def _drain(self) -> None:
        # A single consumer serialises reconciliation, so two events for the
        # same pair cannot interleave their notices.
        try:
            while self._pending:
                room_id = self._pending.pop()
                try:
                    await self._reconcile_room(room_id)
                except Exception:
                    logger.exception("Failed to reconcile connections of %s", room_id)
        finally:
            self._draining = False

    async def _reconcile_room(self, room_id: str) -> None:
        others: set[str] = set()
        if await self._reader.visible(room_id):
            others.update((await self._reader.connection_events(room_id)).keys())
        others.update(row.other_room_id for row in await self._store.cached_connections(room_id))
        others.discard(room_id)
        for other in sorted(others):
            await self._reconcile_pair(room_id, other)

    async def _reconcile_pair(self, a: str, b: str) -> None:
        side_a = await self._reader.side(a, b)
        side_b = await self._reader.side(b, a)
        traits_a = await self._reader.traits(a)
        traits_b = await self._reader.traits(b)
        verdict_a = derive(side_a, side_b, traits_here=traits_a, traits_there=traits_b)
        verdict_b = derive(side_b, side_a, traits_here=traits_b, traits_there=traits_a)
        now = self._api.get_current_time_msec()
        mode = mode_for(traits_a, traits_b)
        prev_a = await self._store.swap_connection(
            a,
            b,
            verdict_a.status,
            verdict_a.ferry,
            self._via_to(b, side_a, side_b),
            mode,
            now,
        )
        prev_b = await self._store.swap_connection(
            b,
            a,
            verdict_b.status,
            verdict_b.ferry,
            self._via_to(a, side_b, side_a),
            mode,
            now,
        )
        old_a, old_b = (prev_a.status, prev_a.ferry), (prev_b.status, prev_b.ferry)
        ferries = {verdict_a.ferry, verdict_b.ferry, old_a[1], old_b[1]}
        if side_a.consent is not None:
            ferries.add(side_a.consent.ferry)
        if side_b.consent is not None:
            ferries.add(side_b.consent.ferry)
        if self._bot.user_id not in ferries:
            return  # another server's ferry carries this connection
        changed = False
        for old, verdict in ((old_a[0], verdict_a), (old_b[0], verdict_b)):
            if old is not verdict.status:
                changed = True
                metrics.transitions.labels(self._api.server_name, verdict.status.value).inc()
        if changed and verdict_a.status is Status.ACTIVE:
            since = await self._activation_position(side_a, side_b)
            await self._store.set_active_since(a, b, since)
            await self._store.set_active_since(b, a, since)
        if changed:
            self.ferry.connections_changed()
        if old_a[0] is not verdict_a.status or old_b[0] is not verdict_b.status:
            logger.info(
                "Connection %s <-> %s: %s/%s -> %s/%s",
                a,
                b,
                old_a[0] and old_a[0].value,
                old_b[0] and old_b[0].value,
                verdict_a.status.value,
                verdict_b.status.value,
            )
        await self._act(a, b, old_a[0], verdict_a, side_a, side_b, mode)
        await self._act(b, a, old_b[0], verdict_b, side_b, side_a, mode)
        stayed_active = verdict_a.status is Status.ACTIVE and old_a[0] is Status.ACTIVE
        if stayed_active and prev_a.mode is not None and prev_a.mode != mode:
            await self._announce_mode(a, b, mode)
            await self._announce_mode(b, a, mode)

    async def _activation_position(self, side_a: Side, side_b: Side) -> int:
        """Stream position of the later consent: what came before it stays put.

        Falls back to the current position if a consent event is not stored
        locally, which errs on the side of ferrying less.
        """
        consent_ids = [s.consent.event_id for s in (side_a, side_b) if s.consent is not None]
        events = await synapse_compat.get_events(self._api, consent_ids)
        known = [synapse_compat.stream_ordering_of(e) for e in events.values()]
        positions = [p for p in known if p is not None]
        if len(positions) == len(consent_ids) == 2:
            return max(positions)
        return synapse_compat.current_stream_position(self._api)

    async def _act(
        self,
        here: str,
        other: str,
        old: Status | None,
        verdict: Verdict,
        here_side: Side,
        there_side: Side,
        mode: Mode,
    ) -> None:
        """Bring the bot's presence and this room's notices in line with ``verdict``."""
        if not here_side.visible and verdict.status is not Status.ACTIVE:
            return
        changed = old is not verdict.status
        inviter = here_side.consent.sender if here_side.consent is not None else None
        via = self._join_via(here, here_side, there_side)
        status = verdict.status
        if status is Status.ACTIVE or (status is Status.REQUESTED and inviter is not None):
            joined = await self._bot.join(here, via, inviter)
            if not joined or not changed:
                return
            label = await self._label(other)
            if status is Status.ACTIVE:
                how = (
                    "messages are shared both ways"
                    if mode is Mode.FERRY
                    else "the rooms are end-to-end encrypted, so clients send to both themselves"
                )
                await self._notice(here, f"This room is now connected to {label}; {how}.")
            elif old is Status.ACTIVE and verdict.blocked_by:
                # A room changed (e.g. turned on encryption) under a live
                # connection: say why it stopped rather than re-announcing a request.
                await self._notice(
                    here,
                    f"The connection to {label} is paused: "
                    + "; ".join(_ACK_REASONS[b] for b in verdict.blocked_by)
                    + ". It resumes once both rooms acknowledge this (--ack-encryption / "
                    "--ack-visibility, or acknowledge in the connection state event).",
                )
            else:
                text = (
                    f"Requested a connection from this room to {label}. It becomes active once "
                    f"an admin there approves it with `!connect approve {here}`"
                    f" ({self._bot.user_id} must be able to join that room)."
                )
                if verdict.blocked_by:
                    text += (
                        " Blocked until both rooms acknowledge: "
                        + ", ".join(_ACK_REASONS[b] for b in verdict.blocked_by)
                        + "."
                    )
                await self._notice(here, text)
        elif status is Status.INCOMING:
            if not changed:
                return
            # Only rooms that let the bot in (public, or it was invited) hear
            # about a request; nobody can make the bot enter a private room.
            if not await self._bot.join(here, via, None):
                return
            label = await self._label(other)
            await self._notice(
                here,
                f"{label} asks to connect to this room. An admin here (power level "
                f"{self._config.approve_power_level}) can approve with `!connect approve {other}`.",
            )
        elif status is Status.REVOKED:
            was_live = old in (Status.ACTIVE, Status.REQUESTED, Status.INCOMING)
            if changed and was_live and await self._bot.membership(here) == "join":
                label = await self._label(other)
                await self._notice(
                    here, f"The connection to {label} has ended; messages are no longer shared."
                )
            await self._leave_if_unneeded(here)

    async def _announce_mode(self, here: str, other: str, mode: Mode) -> None:
        label = await self._label(other)
        if mode is Mode.CLIENT_FANOUT:
            text = (
                f"End-to-end encryption is now on for the connection with {label}: the server "
                "no longer copies messages; clients that support MSC2923 send to both rooms."
            )
        else:
            text = (
                f"The connection with {label} is unencrypted again: messages are shared both ways."
            )
        logger.info("Connection %s -> %s switched to mode %s", here, other, mode.value)
        if await self._bot.membership(here) == "join":
            await self._notice(here, text)

    def _join_via(self, room_id: str, here_side: Side, there_side: Side) -> list[str]:
        servers: list[str] = []
        if there_side.consent is not None:
            servers.extend(there_side.consent.via)
        if here_side.consent is not None:
            servers.append(server_of(here_side.consent.sender) or "")
        servers.append(server_of(room_id) or "")
        return list(dict.fromkeys(s for s in servers if s))

    async def _leave_if_unneeded(self, room_id: str) -> None:
        if await self._bot.membership(room_id) != "join":
            return
        for row in await self._store.cached_connections(room_id):
            if row.ferry == self._bot.user_id and row.status is not Status.REVOKED:
                return
        await self._bot.leave(room_id)

    async def _label(self, room_id: str) -> str:
        return await room_label(self._api, room_id)

    async def _notice(self, room_id: str, text: str, reply_to: str | None = None) -> None:
        await self._bot.notice(room_id, text, reply_to=reply_to)

    # ------------------------------------------------------------------
    # Chat commands (acting process only)

    async def handle_command(self, event: EventBase) -> None:
        room_id = event.room_id
        if await self._bot.membership(room_id) == "invite":
            await self._bot.join(room_id, [s for s in [server_of(event.sender)] if s])
        reply, outcome, verb = await self._run_command(event)
        metrics.commands.labels(self._api.server_name, verb, outcome).inc()
        await self._notice(room_id, reply, reply_to=event.event_id)

    async def _run_command(self, event: EventBase) -> tuple[str, str, str]:
        """The reply text, the outcome (ok, refused, invalid) and the verb."""
        try:
            command = parse_command(str(event.content.get("body", "")))
        except CommandError as e:
            return str(e), "invalid", "unknown"
        verb = command.verb.value
        level = self._config.approve_power_level
        if command.verb is Verb.HELP:
            return HELP_TEXT.format(level=level), "ok", verb
        if command.verb is Verb.LIST:
            views = await self.list_for(event.room_id)
            if not views:
                return "This room has no connections.", "ok", verb
            lines = [
                f"- {await self._label(v.other_room_id)}: {v.status.value} ({v.mode.value})"
                for v in views
            ]
            return "Connections of this room:\n" + "\n".join(lines), "ok", verb
        if not self._api.is_mine(event.sender):
            return self._remote_sender_help(event, command), "remote_sender", verb
        try:
            return await self._run_action(event, command), "ok", verb
        except SynapseError as e:
            return f"Could not {verb}: {e.msg}", "refused", verb

    async def _run_action(self, event: EventBase, command: Command) -> str:
        assert command.room is not None
        if command.verb is Verb.REVOKE:
            await self.revoke(event.sender, event.room_id, command.room)
            return f"Revoked the connection to {command.room}."
        view = await self.request(
            event.sender,
            event.room_id,
            command.room,
            acknowledge=command.acknowledge,
            require_incoming=command.verb is Verb.APPROVE,
        )
        if view.status is Status.ACTIVE:
            return f"Connected to {command.room}."
        if view.blocked_by:
            return (
                f"Consent recorded, but the connection to {command.room} stays inactive until both "
                "rooms acknowledge: " + ", ".join(view.blocked_by) + "."
            )
        return f"Requested a connection to {command.room}; waiting for an admin there to approve."

    def _remote_sender_help(self, event: EventBase, command: Command) -> str:
        content: dict[str, Any] = {}
        if command.verb is not Verb.REVOKE:
            content = {"room_id": command.room, "via": ["<server>"], "ferry": self._bot.user_id}
        return (
            f"I can only act for users of {self._api.server_name}. An admin on another server can "
            f"send this state event in this room instead: type {CONNECTION_EVENT_TYPE}, "
            f"state_key {command.room} (the room ID), content {json.dumps(content)}."
        )
