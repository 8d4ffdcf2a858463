"""Config parsing, including the error Synapse will show an admin."""

from typing import Any

import jsonschema
import pytest
from synapse.config._base import ConfigError
from synapse.util.module_loader import load_module

from synapse_room_connect.config import FallbackMode, Limits, RoomConnectConfig, parse_config


def test_defaults() -> None:
    config = parse_config({})
    assert config == RoomConnectConfig()
    assert config.bot_localpart == "room-connect"
    assert config.worker is None
    assert config.approve_power_level == 100
    assert config.fallback_mode is FallbackMode.COPY
    assert config.limits == Limits(connections_per_room=20)


def test_none_means_defaults() -> None:
    assert parse_config(None) == RoomConnectConfig()


def test_every_option() -> None:
    config = parse_config(
        {
            "bot_localpart": "bridge.bot",
            "bot_displayname": "Bridge",
            "worker": "ferry1",
            "approve_power_level": 50,
            "fallback_mode": "placeholder",
            "limits": {"connections_per_room": 3},
            "ferry_state_events": ["m.room.topic", "m.room.name"],
        }
    )
    assert config.bot_localpart == "bridge.bot"
    assert config.bot_displayname == "Bridge"
    assert config.worker == "ferry1"
    assert config.approve_power_level == 50
    assert config.fallback_mode is FallbackMode.PLACEHOLDER
    assert config.limits.connections_per_room == 3
    assert config.ferry_state_events == {"m.room.topic", "m.room.name"}


def test_config_is_frozen() -> None:
    config = parse_config({})
    with pytest.raises(AttributeError):
        config.approve_power_level = 1  # type: ignore[misc]


def test_ignored_senders_match_whole_ids() -> None:
    config = parse_config({"ignore_users": [r"@irc_.*:example\.org"]})
    assert config.is_ignored_sender("@irc_bob:example.org")
    assert not config.is_ignored_sender("@irc_bob:example.org.evil")
    assert not config.is_ignored_sender("@alice:example.org")


def test_acting_process() -> None:
    assert parse_config({}).is_acting_process(None)
    assert not parse_config({}).is_acting_process("client1")
    assert parse_config({"worker": "ferry1"}).is_acting_process("ferry1")
    assert not parse_config({"worker": "ferry1"}).is_acting_process(None)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"approve_power_level": "high"}, "approve_power_level"),
        ({"approve_power_level": -1}, "approve_power_level"),
        ({"approve_power_level": True}, "approve_power_level"),
        ({"fallback_mode": "mirror"}, "fallback_mode"),
        ({"bot_localpart": "Upper Case"}, "bot_localpart"),
        ({"worker": ""}, "worker"),
        ({"limits": {"connections_per_room": 0}}, "connections_per_room"),
        ({"limits": {"per_room": 3}}, "per_room"),
        ({"bogus": 1}, "bogus"),
        ({"ignore_users": ["(unclosed"]}, "ignore_users"),
        ({"ignore_users": "@bot:.*"}, "ignore_users"),
        ({"ferry_state_events": ["m.room.member"]}, "ferry_state_events"),
        ({"ferry_state_events": ["org.matrix.msc2923.connection"]}, "ferry_state_events"),
        ({"ferry_state_events": "m.room.topic"}, "ferry_state_events"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        parse_config(raw)
    # What Synapse itself reports when loading the module from homeserver.yaml.
    with pytest.raises(ConfigError) as info:
        load_module(
            {"module": "synapse_room_connect.RoomConnectModule", "config": raw},
            ("modules", "<item 0>"),
        )
    assert key in str(info.value)
