"""Proof that the harness runs the real thing in every tier the suite uses.

If one of these fails, every other test's result in that tier means little, so
they check the plumbing itself: the module is loaded by each Synapse process,
databases are what Synapse needs, and events really flow over federation and
through workers.
"""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest

from harness import (
    CLIENT_WORKER,
    EVENT_PERSISTER,
    MAIN,
    Homeserver,
    HomeserverFactory,
    MatrixClient,
    PostgresServer,
    WorkerDeployment,
)
from harness.client import JsonDict
from synapse_room_connect.synapse_compat import newer_than_tested

LOADED_LINE = "synapse_room_connect loaded"
UNTESTED_LINE = "newer than the newest release it was tested with"


def unique(localpart: str) -> str:
    """Session-scoped servers are shared between tests: keep user IDs distinct."""
    return f"{localpart}-{secrets.token_hex(3)}"


def assert_module_info(info: JsonDict, server_name: str) -> None:
    assert isinstance(info["version"], str)
    assert info["version"]
    assert isinstance(info["schema_version"], int)
    assert info["schema_version"] >= 1
    assert info["bot_user_id"].startswith("@")
    assert info["bot_user_id"].endswith(f":{server_name}")


def is_message(event_id: str, body: str) -> Callable[[JsonDict], bool]:
    def match(event: JsonDict) -> bool:
        return event.get("event_id") == event_id and event.get("content", {}).get("body") == body

    return match


def test_module_loads_on_sqlite(homeserver: Homeserver) -> None:
    assert_module_info(homeserver.info(), homeserver.server_name)
    log = homeserver.log_text()
    assert LOADED_LINE in log
    # Only a release newer than the newest tested starts with the warning.
    installed = version("matrix-synapse")
    assert (UNTESTED_LINE in log) is newer_than_tested(installed), installed


def test_metrics_listener_serves_synapse_metrics(homeserver: Homeserver) -> None:
    with urllib.request.urlopen(homeserver.metrics_url, timeout=10) as resp:
        text = resp.read().decode("utf-8")
    assert "synapse_" in text
    # Prometheus text format: "# TYPE name kind" lines precede each metric family.
    assert "\n# TYPE " in text


def test_module_loads_on_postgres(homeserver_pg: Homeserver, postgres: PostgresServer) -> None:
    assert_module_info(homeserver_pg.info(), homeserver_pg.server_name)
    assert LOADED_LINE in homeserver_pg.log_text()

    dbname = homeserver_pg.database_name
    assert dbname is not None
    [(encoding, collate, ctype)] = postgres.query(
        "postgres",
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype "
        "FROM pg_database WHERE datname = %s",
        (dbname,),
    )
    assert (encoding, collate, ctype) == ("UTF8", "C", "C")

    # The module created its table in Synapse's own database, through Synapse.
    [(version,)] = postgres.query(dbname, "SELECT version FROM room_connect_schema_version")
    assert version >= 1
    # And Synapse itself really runs on this database, not on a leftover SQLite.
    alice = homeserver_pg.register(unique("alice"))
    assert postgres.query(dbname, "SELECT name FROM users WHERE name = %s", (alice.user_id,)) == [
        (alice.user_id,)
    ]


def test_module_loads_on_both_federating_homeservers(
    federation: tuple[Homeserver, Homeserver],
) -> None:
    hs1, hs2 = federation
    assert hs1.server_name != hs2.server_name
    for hs in federation:
        assert_module_info(hs.info(), hs.server_name)
        assert LOADED_LINE in hs.log_text()


def test_module_loads_in_every_worker_process(workers: WorkerDeployment) -> None:
    assert set(workers.processes) == {MAIN, EVENT_PERSISTER, CLIENT_WORKER}
    for name, process in workers.processes.items():
        assert process.running, f"{name} is not running"
        assert LOADED_LINE in process.log_text(), f"{name} did not log that the module loaded"
        if process.client_url is not None:
            assert_module_info(workers.info(name), workers.server_name)
    # The worker logs must come from workers, not from main under another name.
    assert "synapse.app.generic_worker" in workers.client_worker.log_text()


@pytest.mark.parametrize(
    ("module_config", "bad_key"),
    [
        pytest.param({"approve_power_level": "high"}, "approve_power_level", id="wrong-type"),
        pytest.param({"bogus": 1}, "bogus", id="unknown-key"),
    ],
)
def test_bad_module_config_stops_startup(
    make_homeserver: HomeserverFactory, module_config: dict[str, Any], bad_key: str
) -> None:
    hs = make_homeserver(module_config=module_config, start=False)
    returncode, output = hs.start_expect_failure()
    assert returncode != 0
    # Synapse prints "Error in configuration at '<path>':" and the reason below it;
    # the key may be in either, depending on the kind of mistake.
    marker = "Error in configuration"
    assert marker in output, output[-3000:]
    error_block = "\n".join(output[output.index(marker) :].splitlines()[:4])
    assert bad_key in error_block, error_block
    assert LOADED_LINE not in output


def test_message_reaches_remote_homeserver(federation: tuple[Homeserver, Homeserver]) -> None:
    hs1, hs2 = federation
    alice = hs1.register(unique("alice"))
    bob = hs2.register(unique("bob"))
    assert bob.user_id is not None
    assert bob.user_id.endswith(f":{hs2.server_name}")

    room_id = alice.create_room(preset="private_chat", name="federation smoke")
    alice.invite(room_id, bob.user_id)
    bob.wait_for_invite(room_id)
    assert bob.join(room_id, via=[hs1.server_name]) == room_id

    body = f"hello over federation {secrets.token_hex(4)}"
    event_id = alice.send_message(room_id, body)
    event = bob.wait_for_event(room_id, is_message(event_id, body), timeout=60)
    assert event["sender"] == alice.user_id
    assert event["type"] == "m.room.message"


def test_message_through_client_worker(workers: WorkerDeployment, postgres: PostgresServer) -> None:
    alice = workers.register(unique("alice"))
    bob = workers.register(unique("bob"))
    assert alice.base_url == workers.client_url
    assert bob.user_id is not None

    room_id = alice.create_room(preset="public_chat", name="workers smoke")
    assert bob.join(room_id) == room_id
    body = f"hello through workers {secrets.token_hex(4)}"
    event_id = alice.send_message(room_id, body)

    for user in (alice, bob):
        event = user.wait_for_event(room_id, is_message(event_id, body))
        assert event["sender"] == alice.user_id

    # The event went through the configured stream writer, not main.
    assert postgres.query(
        workers.database_name,
        "SELECT instance_name FROM events WHERE event_id = %s",
        (event_id,),
    ) == [(EVENT_PERSISTER,)]


def test_client_can_be_pointed_at_main(workers: WorkerDeployment) -> None:
    carol = workers.register(unique("carol"))
    on_main: MatrixClient = carol.with_base_url(workers.main_client_url)
    assert on_main.whoami()["user_id"] == carol.user_id
    assert carol.whoami()["user_id"] == carol.user_id


def test_homeserver_survives_kill_and_restart(make_homeserver: HomeserverFactory) -> None:
    hs = make_homeserver()
    alice = hs.register(unique("alice"))
    room_id = alice.create_room(name="crash smoke")
    before = alice.send_message(room_id, "before the crash")

    hs.kill()
    assert not hs.running
    hs.start()
    assert LOADED_LINE in hs.log_text()

    # The access token and the room survived the crash: state is in the database.
    after = alice.send_message(room_id, "after the restart")
    for event_id, body in ((before, "before the crash"), (after, "after the restart")):
        alice.wait_for_event(room_id, is_message(event_id, body))
    assert hs.stop() == 0
