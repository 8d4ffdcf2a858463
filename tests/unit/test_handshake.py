"""The handshake rules, on plain values."""

from typing import Any

import pytest

from synapse_room_connect.core.handshake import (
    Consent,
    ContentError,
    RoomTraits,
    Side,
    Status,
    derive,
    traits_mismatch,
    validate_content,
)

A, B = "!a:hs1", "!b:hs2"
BOT = "@room-connect:hs1"


def consent(room: str, other: str, ferry: str = BOT, ack: frozenset[str] = frozenset()) -> Consent:
    return Consent(room, other, ("hs1",), ferry, ack, "@admin:hs1", "$e")


def good(**overrides: Any) -> dict[str, Any]:
    return {"room_id": B, "via": ["hs2"], "ferry": BOT, **overrides}


def test_valid_content_passes() -> None:
    validate_content(good(), room_id=A, state_key=B)
    validate_content(good(acknowledge=["encryption_mismatch"]), room_id=A, state_key=B)


def test_room_version_12_ids_are_accepted() -> None:
    v12 = "!Jk2nmDZ0dL6Nf1hg7x_yOQz3-Ta3W9abcdEFGHijklm"
    validate_content(good(room_id=v12), room_id=A, state_key=v12)


@pytest.mark.parametrize(
    ("content", "state_key", "message"),
    [
        (good(room_id=A), B, "room_id must equal the state_key"),
        (good(room_id="!c:hs3"), B, "room_id must equal the state_key"),
        (good(room_id=A), A, "itself"),
        (good(via="hs2"), B, "via"),
        (good(via=[]), B, "via"),
        (good(via=["not a server"]), B, "not a server name"),
        (good(ferry=42), B, "ferry"),
        (good(ferry="room-connect"), B, "ferry must be a user ID"),
        (good(acknowledge=["everything"]), B, "acknowledge"),
        ({"room_id": B, "via": ["hs2"]}, B, "ferry"),
        (good(), "not-a-room", "state_key"),
        (good(padding="x" * 5000), B, "larger than"),
    ],
)
def test_bad_content_is_refused(content: dict[str, Any], state_key: str, message: str) -> None:
    with pytest.raises(ContentError, match=message):
        validate_content(content, room_id=A, state_key=state_key)


def test_both_sides_same_ferry_is_active() -> None:
    verdict = derive(Side(A, consent(A, B)), Side(B, consent(B, A)))
    assert verdict.status is Status.ACTIVE
    assert verdict.ferry == BOT


def test_one_side_is_requested_and_incoming() -> None:
    assert derive(Side(A, consent(A, B)), Side(B)).status is Status.REQUESTED
    assert derive(Side(B), Side(A, consent(A, B))).status is Status.INCOMING


def test_invisible_other_side_is_requested() -> None:
    assert derive(Side(A, consent(A, B)), Side(B, visible=False)).status is Status.REQUESTED


def test_withdrawal_on_either_side_revokes() -> None:
    assert derive(Side(A, withdrawn=True), Side(B, consent(B, A))).status is Status.REVOKED
    assert derive(Side(A, consent(A, B)), Side(B, withdrawn=True)).status is Status.REVOKED


def test_different_ferries_revoke() -> None:
    verdict = derive(Side(A, consent(A, B)), Side(B, consent(B, A, ferry="@other:hs2")))
    assert verdict.status is Status.REVOKED


def test_nothing_is_revoked() -> None:
    assert derive(Side(A), Side(B)).status is Status.REVOKED


ENCRYPTED_PRIVATE = RoomTraits(encrypted=True, public=False)
PLAIN_PRIVATE = RoomTraits(encrypted=False, public=False)
PLAIN_PUBLIC = RoomTraits(encrypted=False, public=True)


def test_mismatch_needs_both_acknowledgements() -> None:
    assert traits_mismatch(ENCRYPTED_PRIVATE, PLAIN_PUBLIC) == (
        "encryption_mismatch",
        "visibility_mismatch",
    )
    acks = frozenset({"encryption_mismatch"})
    one_side = derive(
        Side(A, consent(A, B, ack=acks)),
        Side(B, consent(B, A)),
        traits_here=ENCRYPTED_PRIVATE,
        traits_there=PLAIN_PRIVATE,
    )
    assert one_side.status is Status.REQUESTED
    assert one_side.blocked_by == ("encryption_mismatch",)
    both = derive(
        Side(A, consent(A, B, ack=acks)),
        Side(B, consent(B, A, ack=acks)),
        traits_here=ENCRYPTED_PRIVATE,
        traits_there=PLAIN_PRIVATE,
    )
    assert both.status is Status.ACTIVE


def test_matching_rooms_need_no_acknowledgement() -> None:
    verdict = derive(
        Side(A, consent(A, B)),
        Side(B, consent(B, A)),
        traits_here=PLAIN_PUBLIC,
        traits_there=PLAIN_PUBLIC,
    )
    assert verdict.status is Status.ACTIVE
