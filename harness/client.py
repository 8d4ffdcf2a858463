"""A small, synchronous Matrix client-server API client for tests.

Built on ``urllib`` so the harness needs nothing beyond the standard library and
what Synapse already installs. Every call is blocking; waiting for state that
arrives asynchronously is done by long-polling ``/sync`` (see ``sync_until``),
never by sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

JsonDict = dict[str, Any]
QueryValue = str | int | bool | Sequence[str]

CLIENT_V3 = "/_matrix/client/v3"

# How long urllib waits for a response beyond the server-side long-poll timeout
# before deciding the server is wedged.
_SYNC_GRACE_SECONDS = 15.0
_DEFAULT_REQUEST_TIMEOUT = 60.0

# Enough history on the first sync that a test started after a burst of sends
# still sees the event it waits for.
DEFAULT_SYNC_FILTER: JsonDict = {"room": {"timeline": {"limit": 100}}}

_txn_counter = itertools.count()


class MatrixError(Exception):
    """A non-2xx answer from a Matrix server."""

    def __init__(self, status: int, errcode: str | None, error: str | None, body: Any) -> None:
        self.status = status
        self.errcode = errcode
        self.error = error
        self.body = body
        super().__init__(f"HTTP {status} {errcode or '<no errcode>'}: {error or body!r}")


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _encode_query(query: Mapping[str, QueryValue | None]) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None:
            continue
        if isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif isinstance(value, str | int):
            pairs.append((key, str(value)))
        else:
            pairs.extend((key, item) for item in value)
    return urllib.parse.urlencode(pairs)


def new_txn_id() -> str:
    # Synapse answers a repeated (device, txn id) with the earlier event instead of
    # sending a new one, so ids must not repeat across clients or test processes.
    return f"t{os.getpid()}.{time.monotonic_ns()}.{next(_txn_counter)}"


def timeline_events(sync: JsonDict, room_id: str) -> list[JsonDict]:
    """The timeline events of a joined room in one ``/sync`` response."""
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    events: list[JsonDict] = room.get("timeline", {}).get("events", [])
    return events


def iter_timeline_events(sync: JsonDict) -> Iterator[tuple[str, JsonDict]]:
    for room_id, room in sync.get("rooms", {}).get("join", {}).items():
        for event in room.get("timeline", {}).get("events", []):
            yield room_id, event


def _summarise_event(event: JsonDict) -> str:
    content = event.get("content", {})
    detail = content.get("body") or content.get("membership") or ""
    state_key = event.get("state_key")
    state = f" state_key={state_key!r}" if state_key is not None else ""
    return f"{event.get('type')} from {event.get('sender')}{state} {detail!r}".rstrip()


class MatrixClient:
    """One user's session on one homeserver (or one worker of a deployment)."""

    def __init__(
        self,
        base_url: str,
        access_token: str | None = None,
        user_id: str | None = None,
        *,
        request_timeout: float = _DEFAULT_REQUEST_TIMEOUT,
        sync_filter: JsonDict | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self.user_id = user_id
        self.request_timeout = request_timeout
        self.sync_filter = json.dumps(
            DEFAULT_SYNC_FILTER if sync_filter is None else sync_filter, separators=(",", ":")
        )
        self._since: str | None = None
        # What this client's syncs have delivered, for the wait_* helpers.
        self._seen: dict[str, list[JsonDict]] = {}
        self._returned: set[str | int] = set()
        self._invites: dict[str, JsonDict] = {}

    def __repr__(self) -> str:
        return f"MatrixClient({self.base_url!r}, user_id={self.user_id!r})"

    def with_base_url(self, base_url: str) -> MatrixClient:
        """The same user and token against another process (e.g. a worker)."""
        clone = MatrixClient(
            base_url, self.access_token, self.user_id, request_timeout=self.request_timeout
        )
        clone.sync_filter = self.sync_filter
        return clone

    # -- transport ---------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, QueryValue | None] | None = None,
        *,
        timeout: float | None = None,
        authenticated: bool = True,
    ) -> JsonDict:
        """Send one request; return the decoded JSON body or raise ``MatrixError``.

        ``path`` is everything after the host, e.g. ``/_matrix/client/v3/account/whoami``;
        path parameters must already be percent-encoded.
        """
        url = self.base_url + path
        if query:
            encoded = _encode_query(query)
            if encoded:
                url += "?" + encoded
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT"):
            data = b"{}"
            headers["Content-Type"] = "application/json"
        if authenticated and self.access_token is not None:
            headers["Authorization"] = f"Bearer {self.access_token}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(
                req, timeout=timeout if timeout is not None else self.request_timeout
            ) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            parsed: Any
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            errcode = parsed.get("errcode") if isinstance(parsed, dict) else None
            error = parsed.get("error") if isinstance(parsed, dict) else None
            raise MatrixError(exc.code, errcode, error, parsed) from None
        if not raw:
            return {}
        result = json.loads(raw)
        if not isinstance(result, dict):
            raise MatrixError(200, None, f"expected a JSON object from {method} {path}", result)
        return result

    # -- account -----------------------------------------------------------

    def whoami(self) -> JsonDict:
        return self.request("GET", f"{CLIENT_V3}/account/whoami")

    # -- rooms -------------------------------------------------------------

    def create_room(self, **body: Any) -> str:
        room_id: str = self.request("POST", f"{CLIENT_V3}/createRoom", body)["room_id"]
        return room_id

    def send_event(self, room_id: str, type: str, content: JsonDict) -> str:
        path = f"{CLIENT_V3}/rooms/{_quote(room_id)}/send/{_quote(type)}/{_quote(new_txn_id())}"
        event_id: str = self.request("PUT", path, content)["event_id"]
        return event_id

    def send_message(self, room_id: str, body: str, msgtype: str = "m.text", **extra: Any) -> str:
        content = {"msgtype": msgtype, "body": body, **extra}
        return self.send_event(room_id, "m.room.message", content)

    def send_state(self, room_id: str, type: str, state_key: str, content: JsonDict) -> str:
        path = f"{CLIENT_V3}/rooms/{_quote(room_id)}/state/{_quote(type)}/{_quote(state_key)}"
        event_id: str = self.request("PUT", path, content)["event_id"]
        return event_id

    def get_state(self, room_id: str, type: str, state_key: str = "") -> JsonDict:
        path = f"{CLIENT_V3}/rooms/{_quote(room_id)}/state/{_quote(type)}/{_quote(state_key)}"
        return self.request("GET", path)

    def join(self, room_id_or_alias: str, via: Sequence[str] = ()) -> str:
        path = f"{CLIENT_V3}/join/{_quote(room_id_or_alias)}"
        query: dict[str, QueryValue | None] = {"via": list(via)} if via else {}
        room_id: str = self.request("POST", path, {}, query)["room_id"]
        return room_id

    def invite(self, room_id: str, user_id: str) -> None:
        self.request("POST", f"{CLIENT_V3}/rooms/{_quote(room_id)}/invite", {"user_id": user_id})

    def leave(self, room_id: str) -> None:
        self.request("POST", f"{CLIENT_V3}/rooms/{_quote(room_id)}/leave", {})

    def messages(
        self,
        room_id: str,
        dir: str = "b",
        limit: int = 50,
        from_token: str | None = None,
    ) -> JsonDict:
        query: dict[str, QueryValue | None] = {"dir": dir, "limit": limit, "from": from_token}
        return self.request("GET", f"{CLIENT_V3}/rooms/{_quote(room_id)}/messages", query=query)

    def set_power_level(self, room_id: str, user_id: str, level: int) -> str:
        levels = self.get_state(room_id, "m.room.power_levels")
        levels.setdefault("users", {})[user_id] = level
        return self.send_state(room_id, "m.room.power_levels", "", levels)

    # -- sync --------------------------------------------------------------

    def sync(self, timeout_ms: int = 0, since: str | None = None) -> JsonDict:
        """One raw ``/sync`` call; touches neither the since token nor seen events."""
        return self.request(
            "GET",
            f"{CLIENT_V3}/sync",
            query={"timeout": timeout_ms, "since": since, "filter": self.sync_filter},
            timeout=timeout_ms / 1000 + _SYNC_GRACE_SECONDS,
        )

    def reset_sync(self) -> None:
        """Start over: the next sync is an initial one, and nothing counts as seen."""
        self._since = None
        self._seen.clear()
        self._returned.clear()
        self._invites.clear()

    def _sync_and_record(self, timeout_ms: int) -> JsonDict:
        response = self.sync(timeout_ms=timeout_ms, since=self._since)
        self._since = response["next_batch"]
        rooms = response.get("rooms", {})
        for room_id, event in iter_timeline_events(response):
            self._seen.setdefault(room_id, []).append(event)
        self._invites.update(rooms.get("invite", {}))
        for section in ("join", "leave"):
            for room_id in rooms.get(section, {}):
                self._invites.pop(room_id, None)
        return response

    def sync_until(
        self,
        predicate: Callable[[JsonDict], T | None],
        timeout: float = 30,
        *,
        description: str | None = None,
    ) -> T:
        """Long-poll ``/sync`` until ``predicate`` returns something other than None.

        ``predicate`` is called once per sync response, in order, and returns the
        result. The client keeps its since token across calls, so a response is
        offered to only one ``sync_until`` call; ``wait_for_event`` and
        ``wait_for_invite`` also remember earlier responses. The first sync of a
        client returns recent history.
        """
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what = description or getattr(predicate, "__name__", repr(predicate))
                raise TimeoutError(
                    f"{self.user_id} on {self.base_url}: {what} not seen after "
                    f"{timeout:.1f}s and {polls} /sync responses; recent timeline events:\n  "
                    + self._recent_events_summary()
                )
            try:
                # The server holds the request until something happens or the time
                # left runs out, so this loop wakes only on news.
                response = self._sync_and_record(int(remaining * 1000))
            except TimeoutError as exc:
                raise TimeoutError(
                    f"{self.user_id} on {self.base_url}: /sync did not answer: {exc}"
                ) from exc
            polls += 1
            result = predicate(response)
            if result is not None:
                return result

    def _recent_events_summary(self, count: int = 20) -> str:
        recent = [
            f"{room_id}: {_summarise_event(event)}"
            for room_id, events in self._seen.items()
            for event in events[-count:]
        ]
        return "\n  ".join(recent[-count:]) or "(none)"

    def wait_for_event(
        self,
        room_id: str,
        match: Callable[[JsonDict], bool],
        timeout: float = 30,
        *,
        description: str | None = None,
    ) -> JsonDict:
        """The first timeline event of joined room ``room_id`` that ``match`` accepts
        and that no earlier ``wait_for_event`` on this client returned.

        Events this client has already synced count, so waiting for A and then for
        B works even if B arrived first or in the same response; waiting twice with
        the same ``match`` returns two different events.
        """

        def take(_: JsonDict | None = None) -> JsonDict | None:
            for event in self._seen.get(room_id, ()):
                key = event.get("event_id") or id(event)
                if key not in self._returned and match(event):
                    self._returned.add(key)
                    return event
            return None

        return take() or self.sync_until(
            take, timeout, description=description or f"event in {room_id} matching {match!r}"
        )

    def wait_for_invite(self, room_id: str, timeout: float = 30) -> JsonDict:
        """The invite to ``room_id`` (its ``invite_state`` section), once synced."""

        def find(_: JsonDict | None = None) -> JsonDict | None:
            return self._invites.get(room_id)

        return find() or self.sync_until(find, timeout, description=f"invite to {room_id}")


def register_with_shared_secret(
    base_url: str,
    shared_secret: str,
    localpart: str,
    *,
    admin: bool = False,
    password: str | None = None,
    displayname: str | None = None,
) -> MatrixClient:
    """Create a user through ``/_synapse/admin/v1/register`` and return a client for it."""
    anonymous = MatrixClient(base_url)
    path = "/_synapse/admin/v1/register"
    nonce: str = anonymous.request("GET", path)["nonce"]
    password = password or f"pw-{localpart}-{new_txn_id()}"
    mac = hmac.new(shared_secret.encode("utf-8"), digestmod=hashlib.sha1)
    for part in (nonce, localpart, password):
        mac.update(part.encode("utf-8"))
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    body: JsonDict = {
        "nonce": nonce,
        "username": localpart,
        "password": password,
        "admin": admin,
        "mac": mac.hexdigest(),
    }
    if displayname is not None:
        body["displayname"] = displayname
    result = anonymous.request("POST", path, body)
    return MatrixClient(base_url, result["access_token"], result["user_id"])
