"""The copy of frozen event JSON the module edits: plain dicts and lists all the way down."""

from __future__ import annotations

from types import MappingProxyType

from synapse_room_connect.core.matrix import unfreeze


def test_nested_mappings_and_tuples_become_dicts_and_lists() -> None:
    frozen = MappingProxyType(
        {"body": "hi", "m.relates_to": MappingProxyType({"ids": ("$a", "$b")}), "n": 3}
    )
    thawed = unfreeze(frozen)
    assert thawed == {"body": "hi", "m.relates_to": {"ids": ["$a", "$b"]}, "n": 3}
    assert type(thawed) is dict
    assert type(thawed["m.relates_to"]) is dict
    assert type(thawed["m.relates_to"]["ids"]) is list


def test_the_copy_is_independent_of_the_original() -> None:
    original = {"list": [1, {"k": "v"}]}
    copy = unfreeze(original)
    copy["list"][1]["k"] = "changed"
    assert original["list"][1] == {"k": "v"}


def test_scalars_and_strings_are_kept_as_they_are() -> None:
    assert unfreeze("text") == "text"
    assert unfreeze(b"raw") == b"raw"
    assert unfreeze(None) is None
    assert unfreeze(1.5) == 1.5
