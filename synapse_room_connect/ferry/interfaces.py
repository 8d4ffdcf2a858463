"""What the ferry reads, writes and sends through: narrow protocols, and the
records that cross between its parts.

Each part of the ferry depends only on the protocol it needs, so each runs
against the in-memory stand-ins of the unit tests as well as over Synapse.
``store.Store`` implements the store protocols; ``runner.py`` the event
source and the sender over Synapse, ``crossing.py`` the moderation and the
fence gate.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

import attrs
from synapse.module_api import EventBase

from synapse_room_connect.core.handshake import RoomTraits
from synapse_room_connect.store import ActiveTarget, FerryRecord, SourceEvent, TimelineRead


class RelationPendingError(Exception):
    """An event relates to a pointer whose original's own pointer into the
    target room is still to come (a third room's direction has not carried it
    yet): send it later rather than without its relation."""


class CounterpartKind(enum.Enum):
    """What a counterpart carries; the value is the metrics label."""

    MESSAGE = "message"
    EDIT = "edit"
    REACTION = "reaction"
    REDACTION = "redaction"
    STATE = "state"


@attrs.frozen
class Counterpart:
    """The event to send into the target room for one original."""

    type: str
    content: dict[str, Any]
    kind: CounterpartKind
    redacts: str | None = None
    # Who sends it: a person's ghost, or None for the ferry bot.
    sender: str | None = None

    def event_dict(self, room_id: str, sender: str) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": self.type,
            "room_id": room_id,
            "sender": sender,
            "content": self.content,
        }
        if self.redacts is not None:
            event["redacts"] = self.redacts
        return event


@attrs.frozen
class Outgoing:
    """A counterpart with the transaction ID that makes its send idempotent."""

    txn_id: str
    counterpart: Counterpart


class Withheld(enum.Enum):
    """Why the target room's own moderation keeps an event out; the value is
    the metrics label."""

    BAN = "ban"
    SERVER_ACL = "server_acl"


class SchedulerStore(Protocol):
    """What the scheduler reads: which directions to ferry, how far each has
    been read, and the source rooms' timelines, each for many at once."""

    async def active_targets(self, ferry: str) -> dict[str, list[ActiveTarget]]: ...

    async def cursors(self, room_ids: Collection[str]) -> dict[tuple[str, str], int]: ...

    async def timelines_after(
        self,
        after: Mapping[str, int],
        upto: int,
        limit: int,
        exclude_sender: str,
        fences_after: Mapping[str, int] | None = None,
        exclude_like: str | None = None,
    ) -> TimelineRead: ...


class RecordsWriter(Protocol):
    """What a flush writes once its pointers are sent: for every direction,
    the mappings and the cursor (or the cursor alone over skipped events),
    all in one write."""

    async def record_ferried(self, records: Sequence[FerryRecord]) -> None: ...


class PointerLookup(Protocol):
    """Which pointer carries which original, for relations, edits and redactions."""

    async def pointer_for(self, source_event_id: str, target_room_id: str) -> str | None: ...

    async def original_of(self, pointer_event_id: str) -> SourceEvent | None: ...

    async def pointer_due(self, room_id: str, target_room_id: str, stream: int, ferry: str) -> bool:
        """Whether ``ferry`` is still to carry that event into the target room."""
        ...


class EventSource(Protocol):
    async def get_event(self, event_id: str) -> EventBase | None: ...


class TraitsReader(Protocol):
    """Room traits; None when the room's state cannot be read here."""

    async def traits(self, room_id: str) -> RoomTraits | None: ...


class Preparer(Protocol):
    """Turns one original into the counterpart for one target room."""

    async def prepare(
        self,
        event: EventBase,
        target: str,
        *,
        wait_for_relations: bool = True,
        by_ghost: bool = False,
    ) -> Counterpart | None:
        """None when the event has no counterpart there (e.g. an edit of a
        message that was never ferried). With ``wait_for_relations``, raises
        ``RelationPendingError`` rather than drop a relation whose counterpart is
        still to come. ``by_ghost``: the target room has each author's ghost
        send (where it can get in), not the bot."""
        ...


class Moderation(Protocol):
    async def withheld_by(self, event: EventBase, target: str) -> Withheld | None: ...


class PointerSender(Protocol):
    """Sends counterparts as their senders (the ferry bot or ghosts),
    idempotently by transaction ID."""

    async def already_sent(
        self, wanted: Collection[tuple[str, str, str | None]]
    ) -> dict[tuple[str, str], str]:
        """(room, transaction ID) -> event ID of those Synapse stored, for
        each (room, transaction ID, sender; None: the bot) wanted."""
        ...

    async def send(self, chains: Mapping[str, Sequence[Outgoing]]) -> dict[str, Exception | None]:
        """Send each room's items as one chain, in order, the rooms together
        where Synapse allows; per room None, or the error. A room that failed
        may still have been persisted: ``already_sent`` tells."""
        ...
