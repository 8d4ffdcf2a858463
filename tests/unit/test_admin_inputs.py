"""The admin API's pure parts: power in room version 12, paging tokens, bodies."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.api.errors import SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase, make_event_from_dict

from synapse_room_connect.admin.view import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    decode_token,
    encode_token,
    parse_limit,
)
from synapse_room_connect.connections.actions import ConnectBody, parse_connect_body
from synapse_room_connect.constants import ACK_ENCRYPTION
from synapse_room_connect.store.admin import RoomPair
from synapse_room_connect.synapse_compat import power_in_state

BRIDGE = "@portalbot:hs"
CO_CREATOR = "@cobot:hs"
USER = "@user:hs"


def _event(version: str, fields: dict[str, Any]) -> EventBase:
    base = {
        "auth_events": [],
        "prev_events": [],
        "depth": 1,
        "origin_server_ts": 1,
        "hashes": {"sha256": "unchecked"},
    }
    return make_event_from_dict({**base, **fields}, KNOWN_ROOM_VERSIONS[version])


def _state(version: str, users: dict[str, int]) -> dict[tuple[str, str], EventBase]:
    create_content: dict[str, Any] = {"room_version": version}
    create_fields: dict[str, Any] = {"type": "m.room.create", "state_key": "", "sender": BRIDGE}
    if version == "12":
        create_content["additional_creators"] = [CO_CREATOR]
    else:
        create_fields["room_id"] = "!old:hs"
    create = _event(version, {**create_fields, "content": create_content})
    room_id = "!" + create.event_id[1:] if version == "12" else "!old:hs"
    levels = _event(
        version,
        {
            "type": "m.room.power_levels",
            "state_key": "",
            "sender": BRIDGE,
            "room_id": room_id,
            "content": {"users": users, "users_default": 0},
        },
    )
    return {("m.room.create", ""): create, ("m.room.power_levels", ""): levels}


def test_room_version_12_creators_outrank_any_level() -> None:
    state = _state("12", {USER: 100})
    assert power_in_state(state, BRIDGE) > 100
    assert power_in_state(state, CO_CREATOR) > 100
    assert power_in_state(state, USER) == 100
    assert power_in_state(state, "@other:hs") == 0


def test_older_rooms_count_only_power_levels() -> None:
    state = _state("10", {BRIDGE: 100})
    assert power_in_state(state, BRIDGE) == 100
    assert power_in_state(state, USER) == 0


def test_no_create_event_means_no_power() -> None:
    assert power_in_state({}, BRIDGE) == 0


def test_paging_token_round_trips_and_rejects_garbage() -> None:
    pair = RoomPair("!a:hs", "!b:hs")
    assert decode_token(encode_token(pair)) == pair
    for bad in ("", "not base64!", encode_token(pair)[:-4], "WzEsMl0="):
        with pytest.raises(SynapseError) as raised:
            decode_token(bad)
        assert raised.value.code == 400


def test_limit_defaults_and_bounds() -> None:
    assert parse_limit(None) == DEFAULT_LIMIT
    assert parse_limit(str(MAX_LIMIT)) == MAX_LIMIT
    for bad in ("0", "-1", str(MAX_LIMIT + 1), "ten"):
        with pytest.raises(SynapseError):
            parse_limit(bad)


def test_connect_body() -> None:
    body = parse_connect_body({"room": "#b:hs", "via": ["hs"], "acknowledge": [ACK_ENCRYPTION]})
    assert body == ConnectBody("#b:hs", ("hs",), (ACK_ENCRYPTION,))
    assert parse_connect_body({"room": "!b:hs"}) == ConnectBody("!b:hs")
    for bad in (
        {},
        {"room": ""},
        {"room": "!b", "via": "hs"},
        {"room": "!b", "acknowledge": ["x"]},
        # Unhashable items once made the check itself raise: a 500, not a 400.
        {"room": "!b", "acknowledge": [[1]]},
        {"room": "!b", "acknowledge": [{"a": 1}]},
    ):
        with pytest.raises(SynapseError) as raised:
            parse_connect_body(bad)
        assert raised.value.code == 400
