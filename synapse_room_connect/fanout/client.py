"""The fan-out reference client: one user, one device, end-to-end encrypted.

Built on matrix-nio (``matrix-nio[e2e]``): a maintained, pure-Python Matrix
client library with real Olm/Megolm end-to-end encryption (through its
crypto binding: python-olm up to nio 0.25, vodozemac from 0.26), a device
store on disk, and key sharing to every device of a room. Writing our own
Olm/Megolm session handling would be the riskiest code in the project;
nio's is used by many bots.

What it does for ``send_text``: sync (so nio knows the rooms, their members
and their encryption), ask the module's REST endpoint on the user's own
homeserver for the room's connections, and send the message to the room and
to every room of an *active* connection in mode ``client_fanout`` that the
user has joined, each copy encrypted by nio for every device in that room
(``ignore_unverified_devices=True``: no device is verified, so all get the
keys) and tagged inside the encrypted content (see ``protocol``). Replies and
edits go to each room's copy of the target, found through a map of fan-out id
-> event per room (``mapping``) fed by what this client sent, what it
decrypts while syncing, and, when a copy is missing, a look back through the
room's recent history.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import quote
from uuid import uuid4

import attrs
import nio

from synapse_room_connect.constants import HTTP_ROOT
from synapse_room_connect.fanout.mapping import Copies, CopyMap
from synapse_room_connect.fanout.merge import TimelineEntry, merge_timeline
from synapse_room_connect.fanout.protocol import (
    FANOUT_KEY,
    FanoutTag,
    edit_content,
    new_tag,
    tag_of,
    text_content,
    transaction_id,
)

# handshake.py is pure (no Synapse import), so the client shares its enums.
from synapse_room_connect.handshake import Mode, Status

logger = logging.getLogger(__name__)


DEFAULT_DEVICE_NAME: Final = "MSC2923 fan-out client"
CREDENTIALS_FILE: Final = "credentials.json"
MAP_FILE: Final = "fanout-map.json"

# No lazy loading: nio must know every member of an encrypted room to share
# the room key with all of their devices.
SYNC_FILTER: Final[dict[str, Any]] = {
    "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": False}}
}


def initial_sync_filter() -> dict[str, Any]:
    """``SYNC_FILTER`` made unique to this run.

    Synapse caches the answer to an initial /sync for two minutes
    (``sync_response_cache_duration``), keyed by user, device, filter and
    timeout: a second run of the client within that time would be served the
    first run's stale snapshot (missing the latest messages, members and
    encryption changes). Excluding an event type that never exists changes
    nothing but the filter, so the cache is not hit.
    """
    timeline = {
        **SYNC_FILTER["room"]["timeline"],
        "not_types": [f"{FANOUT_KEY}.nonce.{uuid4().hex}"],
    }
    return {**SYNC_FILTER, "room": {**SYNC_FILTER["room"], "timeline": timeline}}


# How far back to look for a room's copy of a message we have not seen yet.
HISTORY_SCAN_LIMIT: Final = 100


E = TypeVar("E", Status, Mode)


def _enum_or_none(kind: type[E], value: object) -> E | None:
    try:
        return kind(value)
    except ValueError:
        return None


class FanoutError(Exception):
    """The fan-out could not be done; the message says why."""


@attrs.frozen
class Connection:
    room_id: str
    # None: a value this client does not know (a newer server's).
    status: Status | None
    mode: Mode | None
    via: tuple[str, ...] = ()


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


def _error_text(response: Any) -> str:
    status = getattr(response, "status_code", None)
    message = getattr(response, "message", None) or repr(response)
    return f"{status}: {message}" if status else str(message)


def event_dict(room_id: str, event: Any, *, encrypted: bool) -> dict[str, Any] | None:
    """A nio event as a client-server API dict with its room, or None if unusable."""
    source = getattr(event, "source", None)
    if not isinstance(source, dict) or not isinstance(source.get("content"), dict):
        return None
    return {
        "event_id": source.get("event_id") or getattr(event, "event_id", None),
        "room_id": room_id,
        "sender": source.get("sender") or getattr(event, "sender", None),
        "origin_server_ts": source.get("origin_server_ts", 0),
        "type": source.get("type"),
        "content": source["content"],
        # Not part of the event: whether it came encrypted, and if so whether
        # nio could tie the sending device to a verified one.
        "encrypted": encrypted,
        "verified": bool(getattr(event, "verified", False)),
    }


class FanoutClient:
    """One user's fan-out client; use as ``async with FanoutClient(...) as c``."""

    def __init__(
        self,
        homeserver: str,
        user_id: str,
        store_dir: Path,
        *,
        device_name: str = DEFAULT_DEVICE_NAME,
        allow_unencrypted: bool = False,
    ) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.store_dir = store_dir
        self.device_name = device_name
        self.allow_unencrypted = allow_unencrypted
        store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        self._nio: Any = nio.AsyncClient(
            self.homeserver, user_id, store_path=str(store_dir), config=config
        )
        self._user_id = user_id
        self._map = CopyMap.load(store_dir / MAP_FILE)
        # room ID -> event ID -> event dict, in arrival order
        self._events: dict[str, dict[str, dict[str, Any]]] = {}
        self._undecrypted: list[tuple[str, Any]] = []
        self._scanned: set[str] = set()
        self._synced = False

    async def __aenter__(self) -> FanoutClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._map.save()
        await self._nio.close()

    @property
    def user_id(self) -> str:
        return str(self._nio.user_id or self._user_id)

    @property
    def device_id(self) -> str:
        return str(self._nio.device_id)

    @property
    def access_token(self) -> str:
        return str(self._nio.access_token)

    # -- login -----------------------------------------------------------

    def _credentials_path(self) -> Path:
        return self.store_dir / CREDENTIALS_FILE

    def _load_credentials(self) -> dict[str, dict[str, str]]:
        try:
            raw = json.loads(self._credentials_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def _save_credentials(self) -> None:
        saved = self._load_credentials()
        saved[f"{self.homeserver} {self.user_id}"] = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "access_token": self.access_token,
        }
        path = self._credentials_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(saved, handle)

    async def login(self, *, password: str | None = None, access_token: str | None = None) -> None:
        """Log in, reusing this store's device when possible.

        With ``access_token``, the token's own device is used: it must not be a
        device another end-to-end encrypted client already uses (its keys
        would be replaced). With ``password``, a session saved in the store
        directory by an earlier password login is reused while its token
        works, so the device and its Olm account persist across runs;
        otherwise a new device is created and saved.
        """
        if access_token is not None:
            await self._restore(access_token, expected_user=self._user_id)
        else:
            saved = self._load_credentials().get(f"{self.homeserver} {self._user_id}")
            restored = False
            if saved is not None:
                try:
                    await self._restore(saved["access_token"], expected_user=self._user_id)
                    restored = self.device_id == saved.get("device_id")
                except FanoutError as exc:
                    logger.info(
                        "Saved session for %s unusable (%s); logging in", self._user_id, exc
                    )
            if not restored:
                if password is None:
                    raise FanoutError("a password or an access token is needed")
                self._nio.access_token = ""
                response = await self._nio.login(password, device_name=self.device_name)
                if not isinstance(response, nio.LoginResponse):
                    raise FanoutError(f"login failed: {_error_text(response)}")
                self._save_credentials()
        if self._nio.should_upload_keys:
            response = await self._nio.keys_upload()
            if not isinstance(response, nio.KeysUploadResponse):
                raise FanoutError(f"uploading device keys failed: {_error_text(response)}")

    async def _restore(self, access_token: str, *, expected_user: str) -> None:
        self._nio.access_token = access_token
        response = await self._nio.whoami()
        if not isinstance(response, nio.WhoamiResponse):
            raise FanoutError(f"access token rejected: {_error_text(response)}")
        if expected_user and response.user_id != expected_user:
            raise FanoutError(f"the access token belongs to {response.user_id}")
        if not response.device_id:
            raise FanoutError("the access token has no device; encryption needs one")
        self._nio.restore_login(response.user_id, response.device_id, access_token)

    # -- sync and decryption ----------------------------------------------

    async def sync(self, timeout_ms: int = 0) -> None:
        """One /sync (the first one is a full initial sync), then key upkeep."""
        sync_filter = SYNC_FILTER if self._synced else initial_sync_filter()
        response = await self._nio.sync(timeout=timeout_ms, sync_filter=sync_filter)
        if not isinstance(response, nio.SyncResponse):
            raise FanoutError(f"sync failed: {_error_text(response)}")
        self._synced = True
        if self._nio.should_upload_keys:
            await self._nio.keys_upload()
        if self._nio.should_query_keys:
            await self._nio.keys_query()
        await self._nio.send_to_device_messages()
        for room_id, info in response.rooms.join.items():
            for event in info.timeline.events:
                self._take(room_id, event)
        self._retry_undecrypted()
        self._map.save()

    async def ensure_synced(self) -> None:
        if not self._synced:
            await self.sync()

    def _take(self, room_id: str, event: Any) -> None:
        if isinstance(event, nio.MegolmEvent):
            self._undecrypted.append((room_id, event))
            return
        as_dict = event_dict(room_id, event, encrypted=bool(getattr(event, "decrypted", False)))
        if as_dict is None or not isinstance(as_dict["event_id"], str):
            return
        self._events.setdefault(room_id, {})[as_dict["event_id"]] = as_dict
        tag = tag_of(as_dict["content"])
        if tag is not None and isinstance(as_dict["sender"], str):
            self._map.record(as_dict["sender"], tag, room_id, as_dict["event_id"])

    def _decrypt(self, room_id: str, event: Any) -> Any | None:
        event.room_id = room_id
        try:
            decrypted = self._nio.decrypt_event(event)
        except nio.EncryptionError:
            return None
        return None if isinstance(decrypted, nio.BadEvent | nio.UnknownBadEvent) else decrypted

    def _retry_undecrypted(self) -> None:
        waiting, self._undecrypted = self._undecrypted, []
        for room_id, event in waiting:
            decrypted = self._decrypt(room_id, event)
            if decrypted is None:
                self._undecrypted.append((room_id, event))
            else:
                self._take(room_id, decrypted)

    def events(self, *room_ids: str) -> list[dict[str, Any]]:
        """Every event this client has seen (decrypted where it could) in these rooms."""
        return [e for room_id in room_ids for e in self._events.get(room_id, {}).values()]

    def undecrypted(self, room_id: str) -> list[str]:
        """Event IDs in ``room_id`` this client could not decrypt (yet)."""
        return [str(e.event_id) for r, e in self._undecrypted if r == room_id]

    async def sync_until(
        self, done: Callable[[FanoutClient], bool], timeout: float = 30, poll_ms: int = 2000
    ) -> None:
        """Sync until ``done(self)``; long-polls, so it wakes on news."""
        started = time.monotonic()
        await self.ensure_synced()
        while not done(self):
            if time.monotonic() - started > timeout:
                raise FanoutError(f"{self.user_id}: condition not met after {timeout:.0f}s")
            await self.sync(timeout_ms=poll_ms)

    # -- connections ---------------------------------------------------------

    async def connections(self, room_id: str) -> list[Connection]:
        """The room's connections as the user's homeserver reports them."""
        path = f"{HTTP_ROOT}/rooms/{quote(room_id, safe='')}/connections"
        response = await self._nio.send(
            "GET", path, headers={"Authorization": f"Bearer {self.access_token}"}
        )
        try:
            body = await response.json(content_type=None)
        finally:
            response.release()
        if response.status != 200 or not isinstance(body, dict):
            raise FanoutError(f"listing connections of {room_id} failed: {response.status} {body}")
        found: list[Connection] = []
        for item in body.get("connections", []):
            if isinstance(item, dict) and isinstance(item.get("room_id"), str):
                found.append(
                    Connection(
                        room_id=item["room_id"],
                        status=_enum_or_none(Status, item.get("status")),
                        mode=_enum_or_none(Mode, item.get("mode")),
                        via=tuple(str(v) for v in item.get("via") or ()),
                    )
                )
        return found

    async def targets(self, room_id: str) -> tuple[list[str], dict[str, str]]:
        """Rooms a message written in ``room_id`` goes to (itself first), and
        connected rooms left out with the reason."""
        await self.ensure_synced()
        rooms: list[str] = [room_id]
        skipped: dict[str, str] = {}
        for connection in await self.connections(room_id):
            other = connection.room_id
            if connection.status is not Status.ACTIVE or other in rooms:
                continue
            if connection.mode is not Mode.CLIENT_FANOUT:
                mode = connection.mode.value if connection.mode else "unknown"
                skipped[other] = f"mode {mode}: the server carries messages"
            elif other not in self._nio.rooms:
                skipped[other] = f"{self.user_id} has not joined this room"
            else:
                rooms.append(other)
        return rooms, skipped

    # -- sending -------------------------------------------------------------

    async def _encrypted_on_server(self, room_id: str) -> bool:
        response = await self._nio.room_get_state_event(room_id, "m.room.encryption")
        if isinstance(response, nio.RoomGetStateEventResponse):
            return True
        if getattr(response, "status_code", None) == "M_NOT_FOUND":
            return False
        raise FanoutError(f"reading the encryption state of {room_id}: {_error_text(response)}")

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

    async def send_text(
        self,
        room_id: str,
        text: str,
        *,
        reply_to: str | None = None,
        edit: str | None = None,
    ) -> FanoutResult:
        """Send ``text`` in ``room_id`` and to its fan-out connections.

        ``reply_to``/``edit`` name an event in ``room_id``; each other room's
        copy of it is replied to / edited there. A room without a copy gets
        the reply as a plain message, and no edit.
        """
        if reply_to is not None and edit is not None:
            raise FanoutError("a message is either a reply or an edit, not both")
        await self.ensure_synced()
        if room_id not in self._nio.rooms:
            raise FanoutError(f"{self.user_id} has not joined {room_id}")
        rooms, skipped = await self.targets(room_id)
        target = edit or reply_to
        copies = await self._resolve(target, room_id, rooms) if target is not None else None
        if edit is not None:
            if copies is None:
                raise FanoutError(f"{edit} is not a fanned-out message this client knows")
            if copies.sender != self.user_id:
                raise FanoutError(f"{edit} was sent by {copies.sender}; only they can edit it")
        tag = new_tag(room_id)
        origin_encrypted = bool(self._nio.rooms[room_id].encrypted)
        sent: dict[str, str] = {}
        for room in rooms:
            refusal = await self._refusal(room, origin_encrypted)
            if refusal is not None:
                if room == room_id:
                    raise FanoutError(f"not sending in {room_id}: {refusal}")
                skipped[room] = refusal
                continue
            content = self._content(room, room_id, text, tag, copies, reply_to, edit)
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
                    raise FanoutError(f"sending in {room_id} failed: {_error_text(response)}")
                skipped[room] = f"send failed: {_error_text(response)}"
                continue
            sent[room] = str(response.event_id)
            self._map.record(self.user_id, tag, room, str(response.event_id))
            self._map.save()
        return FanoutResult(tag, sent, skipped)

    @staticmethod
    def _content(
        room: str,
        origin: str,
        text: str,
        tag: FanoutTag,
        copies: Copies | None,
        reply_to: str | None,
        edit: str | None,
    ) -> dict[str, Any] | None:
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

    async def _resolve(self, event_id: str, room_id: str, rooms: list[str]) -> Copies | None:
        """Every known copy of the message ``event_id`` (in ``room_id``) is one of."""
        copies = self._map.find(event_id)
        if copies is None:
            response = await self._nio.room_get_event(room_id, event_id)
            if not isinstance(response, nio.RoomGetEventResponse):
                raise FanoutError(f"cannot read {event_id} in {room_id}: {_error_text(response)}")
            event = response.event
            if isinstance(event, nio.MegolmEvent):
                event = self._decrypt(room_id, event)
                if event is None:
                    raise FanoutError(f"cannot decrypt {event_id}: this device has no key for it")
            self._take(room_id, event)
            copies = self._map.find(event_id)
            if copies is None:
                return None  # an ordinary message, not fanned out
        for room in rooms:
            if room not in copies.events and room not in self._scanned:
                await self._scan_history(room)
        return self._map.get(copies.sender, copies.tag.id)

    async def _scan_history(self, room_id: str) -> None:
        """Decrypt the room's recent history to learn its copies of messages."""
        self._scanned.add(room_id)
        response = await self._nio.room_messages(room_id, limit=HISTORY_SCAN_LIMIT)
        if not isinstance(response, nio.RoomMessagesResponse):
            logger.warning("Cannot read history of %s: %s", room_id, _error_text(response))
            return
        for event in response.chunk:
            if isinstance(event, nio.MegolmEvent):
                event = self._decrypt(room_id, event)
                if event is None:
                    continue
            self._take(room_id, event)

    # -- receiving -----------------------------------------------------------

    async def timeline(self, room_id: str) -> list[TimelineEntry]:
        """The merged timeline of ``room_id`` and its fan-out connections, from
        what this client has synced."""
        rooms, _ = await self.targets(room_id)
        return merge_timeline(self.events(*rooms))
