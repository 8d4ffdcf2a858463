"""Rooms for the scale benchmark: many connected pairs set up at once, and a
``/sync`` reader that notes when each pointer (or "now connected" notice) lands.

Used by ``bench/scale.py``; works against a single ``Homeserver`` and a
``WorkerDeployment`` alike (anything with ``register``, ``info`` and
``client_url``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from bench.ferry import Http
from bench.servers import BenchError, quiet_sync_filter
from harness.client import JsonDict, MatrixClient
from harness.connect_api import connect, connections, unique
from harness.ferry_helpers import POINTER

CONNECTED_NOTICE: Final = "now connected"
ACTIVE_TIMEOUT_S: Final = 60.0
SYNC_POLL_MS: Final = 5_000
# Per room and response; far above what one room receives between two polls here.
TIMELINE_LIMIT: Final = 1000


@dataclass(frozen=True)
class RoomPair:
    """Room A (source of the bursts) connected to room B (where pointers land)."""

    index: int
    room_a: str
    room_b: str
    # time.monotonic() when the REST API first answered the connection active:
    # where the bot's activation begins.
    active_at: float = 0.0


@dataclass(frozen=True)
class Owners:
    """The two users that create every bulk room: Alice all A rooms, Bob all B rooms.

    Two users, not one per pair: a real server's rooms have few admins in
    common, but user creation would add nothing but set-up time here."""

    alice: MatrixClient
    bob: MatrixClient
    bot: str

    @classmethod
    def register(cls, server: Any) -> Owners:
        bot: str = server.info()["bot_user_id"]
        alice: MatrixClient = server.register(unique("scale-alice"), displayname="Alice")
        bob: MatrixClient = server.register(unique("scale-bob"), displayname="Bob")
        # Creating rooms on a busy two-core machine can queue for a while.
        alice.request_timeout = bob.request_timeout = 300
        return cls(alice, bob, bot)


def create_pairs(owners: Owners, indexes: Iterable[int], threads: int) -> list[RoomPair]:
    """Create and connect one pair per index through the REST API, ``threads`` at a
    time; return once every connection is active (the bot may not have joined yet)."""

    def one(index: int) -> RoomPair:
        room_a = owners.alice.create_room(name=f"scale A{index}")
        room_b = owners.bob.create_room(name=f"scale B{index}")
        # The bot sends, as in the recorded runs before ghosts; (7) measures ghosts.
        connect(owners.alice, room_a, room_b, senders="bot")
        status = connect(owners.bob, room_b, room_a, senders="bot").get("status")
        # On workers the answering process may not have seen A's request yet
        # (replication lag); the connection turns active once it has.
        deadline = time.monotonic() + ACTIVE_TIMEOUT_S
        while status != "active" and time.monotonic() < deadline:
            time.sleep(0.5)
            status = connections(owners.bob, room_b).get(room_a, {}).get("status")
        if status != "active":
            raise BenchError(f"pair {index}: connection is {status!r} after both consents")
        return RoomPair(index, room_a, room_b, time.monotonic())

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="setup") as pool:
        return list(pool.map(one, indexes))


# -- the reader ---------------------------------------------------------------------------


def pointer_key(event: JsonDict) -> str | None:
    """The original a pointer stands for; None for anything else the bot says."""
    original = event.get("content", {}).get(POINTER, {})
    if "m.new_content" in event.get("content", {}):
        return None  # an edit of a pointer, not a new one
    event_id = original.get("event_id") if isinstance(original, dict) else None
    return event_id if isinstance(event_id, str) else None


def connected_notice_key(event: JsonDict) -> str | None:
    """``"notice"`` for the bot's "now connected" notice; the room is the key's place."""
    content = event.get("content", {})
    if content.get("msgtype") == "m.notice" and CONNECTED_NOTICE in content.get("body", ""):
        return "notice"
    return None


@dataclass
class Sighting:
    """Every time a key was seen: (``time.monotonic()`` after the response, room)."""

    times_rooms: list[tuple[float, str]] = field(default_factory=list)

    @property
    def first(self) -> float:
        return self.times_rooms[0][0]


class SyncReader(threading.Thread):
    """Long-polls ``/sync`` as one user, filtered to the bot's ``m.room.message``
    events in any room (anyone's, ghosts' too, when ``bot`` is None or with
    ``any_sender``), and notes each key ``key_of(event)`` gives.

    A ``limited`` timeline would hide events, so it is counted and makes every
    completeness check fail rather than be filled in."""

    def __init__(
        self,
        base_url: str,
        client: MatrixClient,
        bot: str | None,
        key_of: Callable[[JsonDict], str | None],
        *,
        key_per_room: bool = False,
        any_sender: bool = False,
    ) -> None:
        super().__init__(name="sync-reader", daemon=True)
        if client.access_token is None:
            raise BenchError("the reader needs a logged-in client")
        self._http = Http(base_url, client.access_token, timeout=SYNC_POLL_MS / 1000 + 60)
        self._key_of = key_of
        self._key_per_room = key_per_room
        timeline: JsonDict = {"limit": TIMELINE_LIMIT, "types": ["m.room.message"]}
        if bot is not None and not any_sender:
            timeline["senders"] = [bot]
        self._filter = quiet_sync_filter({"timeline": timeline, "state": {"not_types": ["*"]}})
        self._since: str | None = None
        self._stop_event = threading.Event()
        self._changed = threading.Condition()
        self.seen: dict[str, Sighting] = {}
        self.limited = 0
        self.error: BaseException | None = None

    def prime(self) -> None:
        """Everything before now is history."""
        response, _ = self._http.sync(None, 0, self._filter)
        self._since = str(response["next_batch"])

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                response, received = self._http.sync(self._since, SYNC_POLL_MS, self._filter)
                self._since = str(response["next_batch"])
                self._record(response, received)
        except BaseException as exc:
            self.error = exc
        finally:
            self._http.close()
            with self._changed:
                self._changed.notify_all()

    def _record(self, response: JsonDict, received: float) -> None:
        found: list[tuple[str, str]] = []
        for room_id, room in response.get("rooms", {}).get("join", {}).items():
            timeline = room.get("timeline", {})
            if timeline.get("limited") and self._since is not None:
                self.limited += 1
            for event in timeline.get("events", []):
                key = self._key_of(event)
                if key is not None:
                    found.append((room_id if self._key_per_room else key, room_id))
        if found:
            with self._changed:
                for key, room_id in found:
                    self.seen.setdefault(key, Sighting()).times_rooms.append((received, room_id))
                self._changed.notify_all()

    def wait_for(self, keys: Iterable[str], timeout: float) -> set[str]:
        """Wait until every key has been seen; return those still missing."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                missing = wanted - self.seen.keys()
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0 or self.error is not None:
                    break
                self._changed.wait(min(remaining, 1.0))
        if self.error is not None:
            raise BenchError(f"/sync reader failed: {self.error!r}") from self.error
        return missing

    def sightings(self, key: str) -> list[tuple[float, str]]:
        with self._changed:
            sighting = self.seen.get(key)
            return list(sighting.times_rooms) if sighting else []

    def stop(self) -> None:
        self._stop_event.set()


def wait_until_connected(
    reader: SyncReader, rooms: Sequence[str], timeout: float, what: str
) -> float:
    """Until the bot's "now connected" notice is in every room; return when the last came."""
    missing = reader.wait_for(rooms, timeout)
    if missing:
        raise BenchError(
            f"{what}: no 'now connected' notice after {timeout:.0f} s in "
            f"{len(missing)} of {len(rooms)} rooms"
        )
    return max(reader.sightings(room)[0][0] for room in rooms)
