"""Whether an event crosses into a target room: the whole rule, in one place.

``Crossing.crosses`` answers it for one event of one direction (source room
-> target room), from four facts:

- the kind of event: the ferry carries messages, stickers, reactions,
  redactions and the state types ``ferry_state_events`` names; never the
  bot's own events, another connection's pointers, soft-failed events or
  ignored senders (``is_carried``);
- encryption: when either room is encrypted the server cannot read the
  content, so clients fan out and nothing crosses;
- the target room's own moderation, which a pointer must not get round: a
  sender it has banned, or whose server its ACL denies (``TargetModeration``);
- the fence: reconciliation (connections/reconcile.py) runs beside the ferry
  and tells it of a revocation only once it has processed it, so a message
  sent just after a revocation could be read, and carried, first. Each
  timeline read therefore also returns the connection and room-trait changes
  in both rooms of every direction (store/events.py). Past the first such
  change the rooms' current state decides, not what the ferry loaded:
  - the connection is no longer active, or another ferry carries it: nothing
    said after the change crosses (HOLD), and reconciliation ends the
    direction;
  - it is active on consents given after the ferry's position (revoked and
    given again): what was said in between stays on its side
    (BEFORE_CONSENT), as when reconciliation re-activates a connection;
  - otherwise (another connection of the room changed, or a trait that
    changed nothing): carry on.

The facts about the direction (encryption, the fence) are read once per pass
into a ``Passage``; the event's own facts are read per event.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

import attrs
from synapse.module_api import EventBase, ModuleApi

from synapse_room_connect import synapse_compat
from synapse_room_connect.config import RoomConnectConfig
from synapse_room_connect.connections.status import ActivationPosition, StateReader, derive_pair
from synapse_room_connect.constants import POINTER_KEY
from synapse_room_connect.core.handshake import Status
from synapse_room_connect.core.matrix import server_of
from synapse_room_connect.ferry.interfaces import Moderation, TraitsReader, Withheld

_FERRIED_TYPES: Final = frozenset({"m.room.message", "m.sticker", "m.reaction", "m.room.redaction"})


class CrossingVerdict(enum.Enum):
    """Whether an event crosses, and if not, why; the value is the log word."""

    CROSSES = "crosses"
    NOT_CARRIED = "not_carried"  # a kind of event the ferry never carries
    ENCRYPTED = "encrypted"  # either room is encrypted: clients fan out
    BAN = "ban"  # the target room banned the sender
    SERVER_ACL = "server_acl"  # the target room's ACL denies the sender's server
    BEFORE_CONSENT = "before_consent"  # said before the consents now in force
    HOLD = "hold"  # past a change that ended the connection here

    @property
    def withheld(self) -> Withheld | None:
        """The target room's moderation that kept the event out, if any."""
        return {
            CrossingVerdict.BAN: Withheld.BAN,
            CrossingVerdict.SERVER_ACL: Withheld.SERVER_ACL,
        }.get(self)


@attrs.frozen
class PastFence:
    """Whether events after a fence may cross, and from where."""

    carry: bool
    # With ``carry``: events up to here stay on their side (said before the
    # consents the connection is active on now).
    resume_after: int = 0


HOLD = PastFence(carry=False)


class FenceGate(Protocol):
    async def past_fence(self, room_id: str, target: str) -> PastFence: ...


def first_fence(
    fences: Mapping[str, Sequence[int]], rooms: Sequence[str], after: int, upto: int
) -> int | None:
    """The first change in any of ``rooms`` in (after, upto], if any."""
    return min(
        (p for room in rooms for p in fences.get(room, ()) if after < p <= upto), default=None
    )


@attrs.frozen
class Passage:
    """What one pass knows of a direction before reading its events: whether
    its rooms' content can cross at all, and its first fence."""

    encrypted: bool = False
    fence: int | None = None
    past: PastFence = HOLD
    # How far the pass read: nothing beyond it is passed over.
    upto: int = 0

    @property
    def skip_to(self) -> int | None:
        """Past a fence the connection carries on from: the position up to
        which events stay on their side."""
        if self.fence is None or not self.past.carry:
            return None
        return min(max(self.fence, self.past.resume_after), self.upto)

    def at(self, stream: int) -> CrossingVerdict | None:
        """The direction's verdict on an event at ``stream``; None when the
        event's own facts decide."""
        if self.encrypted:
            return CrossingVerdict.ENCRYPTED
        if self.fence is None or stream < self.fence:
            return None
        if not self.past.carry:
            return CrossingVerdict.HOLD
        skip_to = self.skip_to
        if skip_to is not None and stream <= skip_to:
            return CrossingVerdict.BEFORE_CONSENT
        return None


def is_carried(
    config: RoomConnectConfig,
    bot_user_id: str,
    event: EventBase,
    is_ghost: Callable[[str], bool] = lambda _user_id: False,
) -> bool:
    """Whether the ferry carries this kind of event at all: never the bot's
    or its ghosts' own (they would cross back)."""
    if event.sender == bot_user_id or is_ghost(event.sender):
        return False
    if synapse_compat.is_soft_failed(event):
        return False
    if event.is_state():
        if event.type not in config.ferry_state_events:
            return False
    elif event.type not in _FERRIED_TYPES:
        return False
    if POINTER_KEY in event.content:
        return False  # another connection's pointer: never carried twice
    return not config.is_ignored_sender(event.sender)


@attrs.define
class Crossing:
    """The rule: each fact is asked of the part that knows it."""

    _carried: Callable[[EventBase], bool]
    _traits: TraitsReader
    _moderation: Moderation
    _fences: FenceGate

    async def passage(
        self,
        direction: tuple[str, str],
        fences: Mapping[str, Sequence[int]],
        after: int,
        upto: int,
    ) -> Passage:
        """The direction's part of the rule for events in (after, upto]."""
        for room in direction:
            traits = await self._traits.traits(room)
            if traits is not None and traits.encrypted:
                return Passage(encrypted=True, upto=upto)
        fence = first_fence(fences, direction, after, upto)
        if fence is None:
            return Passage(upto=upto)
        return Passage(fence=fence, past=await self._fences.past_fence(*direction), upto=upto)

    async def crosses(
        self, event: EventBase, stream: int, target: str, passage: Passage
    ) -> CrossingVerdict:
        """Whether ``event``, at ``stream`` in its room, crosses into ``target``."""
        verdict = passage.at(stream)
        if verdict is not None:
            return verdict
        if not self._carried(event):
            return CrossingVerdict.NOT_CARRIED
        withheld = await self._moderation.withheld_by(event, target)
        if withheld is Withheld.BAN:
            return CrossingVerdict.BAN
        if withheld is Withheld.SERVER_ACL:
            return CrossingVerdict.SERVER_ACL
        return CrossingVerdict.CROSSES


class TargetModeration:
    """The target room's bans and server ACL, read from its current state."""

    def __init__(self, api: ModuleApi) -> None:
        self._api = api

    async def withheld_by(self, event: EventBase, target: str) -> Withheld | None:
        member_key = ("m.room.member", event.sender)
        member = (await self._api.get_room_state(target, [member_key])).get(member_key)
        if member is not None and member.content.get("membership") == "ban":
            return Withheld.BAN
        server = server_of(event.sender)
        if server and await synapse_compat.server_denied(self._api, target, server):
            return Withheld.SERVER_ACL
        return None


@attrs.define
class CurrentStateGate:
    """Decides past a fence from the rooms' current state, which includes the
    change: Synapse updates current state before the stream position moves."""

    _reader: StateReader
    _activation_position: ActivationPosition
    _bot_user_id: str

    async def past_fence(self, room_id: str, target: str) -> PastFence:
        pair = await derive_pair(self._reader, room_id, target)
        verdict = pair.a.verdict
        if verdict.status is not Status.ACTIVE or verdict.ferry != self._bot_user_id:
            return HOLD
        return PastFence(True, await self._activation_position(pair.a.here, pair.b.here))
