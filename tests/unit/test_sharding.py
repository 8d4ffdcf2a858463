"""Which ferry process carries which connection: stable, both ways on one, balanced."""

from __future__ import annotations

import hashlib
from collections import Counter

import attrs
import jsonschema
import pytest

from synapse_room_connect.config import parse_config
from synapse_room_connect.constants import CONNECTION_EVENT_TYPE
from synapse_room_connect.core.sharding import FerryInstances, pair_key, shard_of
from tests.unit.stand_ins import run_async
from tests.unit.test_router import BOT, A, B, Setup, state

ROOMS = [f"!room{n}:example.org" for n in range(400)]
PAIRS = list(zip(ROOMS[::2], ROOMS[1::2], strict=True))


def test_shard_is_synapses_choice_for_a_key() -> None:
    # The rule Synapse applies to federation_sender_instances: sha256 of the
    # key, little-endian, modulo the number of instances.
    key = "!a:example.org\n!b:example.org"
    expected = int.from_bytes(hashlib.sha256(key.encode()).digest(), "little") % 3
    assert shard_of(key, 3) == expected


def test_assignment_is_stable_across_calls_and_objects() -> None:
    first = FerryInstances(("ferry1", "ferry2", "ferry3"))
    second = FerryInstances(("ferry1", "ferry2", "ferry3"))
    assert [first.owner(a, b) for a, b in PAIRS] == [second.owner(a, b) for a, b in PAIRS]
    # Pinned: a change of the hash would move every connection on upgrade.
    assert shard_of(pair_key("!a:x", "!b:x"), 2) == shard_of("!a:x\n!b:x", 2)
    assert [shard_of(f"!r{n}:x", 2) for n in range(8)] == [
        int.from_bytes(hashlib.sha256(f"!r{n}:x".encode()).digest(), "little") % 2 for n in range(8)
    ]


def test_both_directions_of_a_connection_are_on_one_instance() -> None:
    instances = FerryInstances(("ferry1", "ferry2", "ferry3"))
    for a, b in PAIRS:
        assert instances.owner(a, b) == instances.owner(b, a)
        owner = instances.owner(a, b)
        assert [instances.owns(name, a, b) for name in instances.names].count(True) == 1
        assert instances.owns(owner, b, a)


def test_assignment_is_roughly_balanced() -> None:
    for count in (2, 3):
        names = tuple(f"ferry{n}" for n in range(count))
        load = Counter(FerryInstances(names).owner(a, b) for a, b in PAIRS)
        assert set(load) == set(names)
        fair = len(PAIRS) / count
        assert all(abs(n - fair) < 0.25 * fair for n in load.values()), load


def test_one_instance_carries_everything_and_coordinates() -> None:
    single = FerryInstances(("ferry1",))
    assert not single.sharded
    assert all(single.owns("ferry1", a, b) for a, b in PAIRS)
    assert single.is_coordinator("ferry1")
    assert not single.is_coordinator(None)


def test_the_first_listed_coordinates_and_main_is_named_main() -> None:
    instances = FerryInstances.from_option(["main", "ferry2"])
    assert instances.coordinator == "main"
    assert instances.is_coordinator(None)
    assert not instances.is_coordinator("ferry2")
    assert instances.ferries("ferry2")
    assert instances.ferries(None)
    assert not instances.ferries("client_worker")
    assert FerryInstances.from_option(None).names == ("main",)
    assert FerryInstances.from_option("ferry1").names == ("ferry1",)


def test_the_worker_option_takes_a_list() -> None:
    config = parse_config({"worker": ["ferry1", "ferry2"]})
    assert config.ferry_instances.names == ("ferry1", "ferry2")
    assert config.worker == "ferry1"
    assert config.is_acting_process("ferry1")
    assert not config.is_acting_process("ferry2")
    assert parse_config({"worker": ["ferry1"]}) == parse_config({"worker": "ferry1"})


@pytest.mark.parametrize("bad", [[], ["ferry1", "ferry1"], [""], ["ferry1", None], 3, {}])
def test_a_bad_list_is_refused_naming_the_key(bad: object) -> None:
    with pytest.raises(jsonschema.ValidationError) as error:
        parse_config({"worker": bad})
    assert error.value.absolute_path[0] == "worker"


def test_instances_refuse_an_empty_or_repeated_list() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FerryInstances(())
    with pytest.raises(ValueError, match="listed twice"):
        FerryInstances(("a", "a"))
    with pytest.raises(ValueError, match="at least one"):
        shard_of("key", 0)


@run_async
async def test_a_ferry_process_that_does_not_coordinate_only_ferries() -> None:
    """Reconciliation, invites and commands happen once, on the coordinator."""
    s = Setup()
    router = attrs.evolve(s.router, coordinator=False)
    await router.on_new_events(
        [
            s.message("$cmd", A, "!connect help"),
            state(CONNECTION_EVENT_TYPE, A, B),
            state("m.room.member", B, BOT, "invite"),
            state("m.room.member", A, BOT, "join"),
        ]
    )
    assert s.ferry.woken_for == [{A, B}]
    assert s.reconciler.changed == []
    assert s.background() == []
    assert s.fetched == []
