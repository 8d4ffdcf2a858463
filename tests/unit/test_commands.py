"""Chat command parsing."""

import pytest

from synapse_room_connect.commands.runner import (
    Command,
    CommandError,
    Verb,
    is_command,
    parse_command,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!connect", Command(Verb.HELP)),
        ("!connect help", Command(Verb.HELP)),
        ("!connect list", Command(Verb.LIST)),
        ("!connect request #b:hs2", Command(Verb.REQUEST, "#b:hs2")),
        ("!connect APPROVE !b:hs2", Command(Verb.APPROVE, "!b:hs2")),
        ("!connect revoke !b:hs2", Command(Verb.REVOKE, "!b:hs2")),
        (
            "!connect request #b:hs2 --ack-encryption --ack-visibility",
            Command(
                Verb.REQUEST, "#b:hs2", frozenset({"encryption_mismatch", "visibility_mismatch"})
            ),
        ),
    ],
)
def test_parse(body: str, expected: Command) -> None:
    assert is_command(body)
    assert parse_command(body) == expected


@pytest.mark.parametrize("body", ["!connected", "hello !connect", "", None, 5])
def test_not_commands(body: object) -> None:
    assert not is_command(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("!connect frobnicate", "Unknown command"),
        ("!connect request", "Usage"),
        ("!connect request a b", "Usage"),
        ("!connect request room", "neither a room alias"),
        ("!connect revoke !b:hs --ack-encryption", "Unknown option"),
        ("!connect request !b:hs --force", "Unknown option"),
        ("!connect list extra", "takes no arguments"),
        ('!connect request "unterminated', "Could not read"),
    ],
)
def test_errors_say_why(body: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(body)
