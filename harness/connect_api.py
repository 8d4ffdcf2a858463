"""Small wrappers for the module's REST API and the bot's notices, for tests."""

from __future__ import annotations

import re
import urllib.request
import uuid
from typing import Any
from urllib.parse import quote

from harness.client import JsonDict, MatrixClient
from harness.synapse import Homeserver

ROOT = "/_synapse/client/org.matrix.msc2923"
CONNECTION = "org.matrix.msc2923.connection"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _q(room_id: str) -> str:
    return quote(room_id, safe="")


def connections(client: MatrixClient, room_id: str) -> dict[str, JsonDict]:
    """The room's connections keyed by the other room's ID."""
    body = client.request("GET", f"{ROOT}/rooms/{_q(room_id)}/connections")
    return {c["room_id"]: c for c in body["connections"]}


def connect(client: MatrixClient, room_id: str, other: str, **body: Any) -> JsonDict:
    return client.request(
        "POST", f"{ROOT}/rooms/{_q(room_id)}/connections", {"room": other, **body}
    )


def revoke(client: MatrixClient, room_id: str, other: str) -> JsonDict:
    return client.request("DELETE", f"{ROOT}/rooms/{_q(room_id)}/connections/{_q(other)}")


def wait_for_notice(
    client: MatrixClient, room_id: str, bot: str, contains: str, timeout: float = 30
) -> JsonDict:
    """The first notice from ``bot`` in ``room_id`` whose body contains ``contains``."""

    def match(event: JsonDict) -> bool:
        content = event.get("content", {})
        return (
            event.get("sender") == bot
            and event.get("type") == "m.room.message"
            and content.get("msgtype") == "m.notice"
            and contains in content.get("body", "")
        )

    return client.wait_for_event(
        room_id, match, timeout, description=f"notice from {bot} containing {contains!r}"
    )


def wait_for_membership(
    client: MatrixClient, room_id: str, user_id: str, membership: str, timeout: float = 30
) -> JsonDict:
    def match(event: JsonDict) -> bool:
        return (
            event.get("type") == "m.room.member"
            and event.get("state_key") == user_id
            and event.get("content", {}).get("membership") == membership
        )

    return client.wait_for_event(
        room_id, match, timeout, description=f"{user_id} {membership} in {room_id}"
    )


def notices_from(client: MatrixClient, room_id: str, bot: str) -> list[str]:
    """Every notice body the bot has posted in the room, oldest first."""
    chunk = client.messages(room_id, dir="b", limit=200)["chunk"]
    return [
        e["content"].get("body", "")
        for e in reversed(chunk)
        if e.get("sender") == bot and e.get("content", {}).get("msgtype") == "m.notice"
    ]


def metrics_text(hs: Homeserver) -> str:
    with urllib.request.urlopen(hs.metrics_url, timeout=10) as response:
        text: str = response.read().decode()
    return text


def metric_value(hs: Homeserver, name: str, **labels: str) -> float:
    """One sample from the homeserver's Prometheus endpoint, 0 if absent."""
    wanted = {**labels, "server_name": hs.server_name}
    for line in metrics_text(hs).splitlines():
        if not line.startswith(name + "{"):
            continue
        label_text, _, value = line[len(name) + 1 :].rpartition("} ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if found == wanted:
            return float(value)
    return 0.0
