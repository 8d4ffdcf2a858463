"""The sending side of the fan-out client: one copy of a message per room,
each encrypted by nio for that room's devices, with the policy on which rooms
may get a copy at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import nio

from synapse_room_connect.fanout.errors import FanoutError, error_text
from synapse_room_connect.fanout.mapping import Copies, CopyMap
from synapse_room_connect.fanout.protocol import (
    FanoutTag,
    edit_content,
    text_content,
    transaction_id,
)


@attrs.frozen
class FanoutResult:
    tag: FanoutTag
    sent: Mapping[str, str]  # room ID -> event ID of the copy
    skipped: Mapping[str, str]  # room ID -> reason

    def to_json(self) -> dict[str, Any]:
        return {
            "fanout_id": self.tag.id,
            "origin_room_id": self.tag.origin_room_id,
            "sent": dict(self.sent),
            "skipped": dict(self.skipped),
        }


def copy_content(
    room: str,
    origin: str,
    text: str,
    tag: FanoutTag,
    copies: Copies | None,
    reply_to: str | None,
    edit: str | None,
) -> dict[str, Any] | None:
    """The content of ``room``'s copy, or None if the room gets none (an edit
    of a message that has no copy there)."""
    if edit is not None:
        assert copies is not None
        event_id = copies.events.get(room)
        if event_id is None:
            return None
        return edit_content(text, tag, target_event_id=event_id, target_tag=copies.tag)
    parent: str | None = None
    if reply_to is not None:
        parent = copies.events.get(room) if copies is not None else None
        if parent is None and room == origin:
            parent = reply_to  # not a fanned-out message: reply where it is
    return text_content(text, tag, reply_to=parent)


class Sender:
    """Sends the copies through the nio ``client``, recording each in ``copy_map``."""

    def __init__(self, client: Any, copy_map: CopyMap, *, allow_unencrypted: bool) -> None:
        self._nio = client
        self._map = copy_map
        self.allow_unencrypted = allow_unencrypted

    async def _encrypted_on_server(self, room_id: str) -> bool:
        response = await self._nio.room_get_state_event(room_id, "m.room.encryption")
        if isinstance(response, nio.RoomGetStateEventResponse):
            return True
        if getattr(response, "status_code", None) == "M_NOT_FOUND":
            return False
        raise FanoutError(f"reading the encryption state of {room_id}: {error_text(response)}")

    async def _refusal(self, room_id: str, origin_encrypted: bool) -> str | None:
        """Why a copy must not go to ``room_id`` unencrypted, or None if it may go."""
        encrypted_here = bool(self._nio.rooms[room_id].encrypted)
        if not encrypted_here and await self._encrypted_on_server(room_id):
            # nio would send plaintext; never into a room that is encrypted.
            return "the room is encrypted but this client has not seen it yet"
        if not encrypted_here and origin_encrypted and not self.allow_unencrypted:
            return (
                "the room is not encrypted and the message comes from an encrypted room "
                "(allow_unencrypted / --allow-unencrypted sends it anyway)"
            )
        return None

    async def send_copies(
        self,
        sender: str,
        room_id: str,
        rooms: list[str],
        skipped: dict[str, str],
        text: str,
        tag: FanoutTag,
        *,
        copies: Copies | None,
        reply_to: str | None,
        edit: str | None,
    ) -> FanoutResult:
        """Send ``text`` to each of ``rooms`` (``room_id``, the origin, first).

        A failure in the origin room raises before any other room gets a copy;
        a failure elsewhere is added to ``skipped`` and the rest go on.
        """
        origin_encrypted = bool(self._nio.rooms[room_id].encrypted)
        sent: dict[str, str] = {}
        for room in rooms:
            refusal = await self._refusal(room, origin_encrypted)
            if refusal is not None:
                if room == room_id:
                    raise FanoutError(f"not sending in {room_id}: {refusal}")
                skipped[room] = refusal
                continue
            content = copy_content(room, room_id, text, tag, copies, reply_to, edit)
            if content is None:
                skipped[room] = "no copy of the edited message in this room"
                continue
            response = await self._nio.room_send(
                room,
                "m.room.message",
                content,
                tx_id=transaction_id(tag, room),
                ignore_unverified_devices=True,
            )
            if not isinstance(response, nio.RoomSendResponse):
                if room == room_id:
                    raise FanoutError(f"sending in {room_id} failed: {error_text(response)}")
                skipped[room] = f"send failed: {error_text(response)}"
                continue
            sent[room] = str(response.event_id)
            self._map.record(sender, tag, room, str(response.event_id))
            self._map.save()
        return FanoutResult(tag, sent, skipped)
