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

This class ties the parts together; each lives in a module of its own:
``session`` (login and the saved session), ``connections`` (which rooms a
message goes to), ``reading`` (sync, decryption, finding copies) and
``sending`` (the copies themselves).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import nio

from synapse_room_connect.fanout.connections import Connection, choose_targets, list_connections
from synapse_room_connect.fanout.errors import FanoutError
from synapse_room_connect.fanout.mapping import CopyMap
from synapse_room_connect.fanout.merge import TimelineEntry, merge_timeline
from synapse_room_connect.fanout.protocol import new_tag
from synapse_room_connect.fanout.reading import Reader
from synapse_room_connect.fanout.sending import FanoutResult, Sender
from synapse_room_connect.fanout.session import CredentialStore, log_in

# Importers of this module's public names before it was split keep working.
__all__ = ["Connection", "FanoutClient", "FanoutError", "FanoutResult"]

DEFAULT_DEVICE_NAME: Final = "MSC2923 fan-out client"
MAP_FILE: Final = "fanout-map.json"


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
        store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        self._nio: Any = nio.AsyncClient(
            self.homeserver, user_id, store_path=str(store_dir), config=config
        )
        self._user_id = user_id
        self._credentials = CredentialStore(store_dir)
        self._map = CopyMap.load(store_dir / MAP_FILE)
        self._reader = Reader(self._nio, self._map)
        self._sender = Sender(self._nio, self._map, allow_unencrypted=allow_unencrypted)

    @property
    def allow_unencrypted(self) -> bool:
        return self._sender.allow_unencrypted

    @allow_unencrypted.setter
    def allow_unencrypted(self, value: bool) -> None:
        self._sender.allow_unencrypted = value

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

    async def login(self, *, password: str | None = None, access_token: str | None = None) -> None:
        """Log in, reusing this store's device when possible.

        With ``access_token``, the token's own device is used: it must not be a
        device another end-to-end encrypted client already uses (its keys
        would be replaced). With ``password``, a session saved in the store
        directory by an earlier password login is reused while its token
        works, so the device and its Olm account persist across runs;
        otherwise a new device is created and saved.
        """
        await log_in(
            self._nio,
            self._credentials,
            self.homeserver,
            self._user_id,
            device_name=self.device_name,
            password=password,
            access_token=access_token,
        )

    async def sync(self, timeout_ms: int = 0) -> None:
        """One /sync (the first one is a full initial sync), then key upkeep."""
        await self._reader.sync(timeout_ms)

    async def ensure_synced(self) -> None:
        if not self._reader.synced:
            await self.sync()

    def events(self, *room_ids: str) -> list[dict[str, Any]]:
        """Every event this client has seen (decrypted where it could) in these rooms."""
        return self._reader.events(*room_ids)

    def undecrypted(self, room_id: str) -> list[str]:
        """Event IDs in ``room_id`` this client could not decrypt (yet)."""
        return self._reader.undecrypted(room_id)

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

    async def connections(self, room_id: str) -> list[Connection]:
        """The room's connections as the user's homeserver reports them."""
        return await list_connections(self._nio, self.access_token, room_id)

    async def targets(self, room_id: str) -> tuple[list[str], dict[str, str]]:
        """Rooms a message written in ``room_id`` goes to (itself first), and
        connected rooms left out with the reason."""
        await self.ensure_synced()
        found = await self.connections(room_id)
        return choose_targets(room_id, found, self._nio.rooms, self.user_id)

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
        copies = (
            await self._reader.copies_of(target, room_id, rooms) if target is not None else None
        )
        if edit is not None:
            if copies is None:
                raise FanoutError(f"{edit} is not a fanned-out message this client knows")
            if copies.sender != self.user_id:
                raise FanoutError(f"{edit} was sent by {copies.sender}; only they can edit it")
        return await self._sender.send_copies(
            self.user_id,
            room_id,
            rooms,
            skipped,
            text,
            new_tag(room_id),
            copies=copies,
            reply_to=reply_to,
            edit=edit,
        )

    async def timeline(self, room_id: str) -> list[TimelineEntry]:
        """The merged timeline of ``room_id`` and its fan-out connections, from
        what this client has synced."""
        rooms, _ = await self.targets(room_id)
        return merge_timeline(self.events(*rooms))
