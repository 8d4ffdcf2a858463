"""A local homeserver with the module, two connected rooms, messages crossing.

Run with ``make demo``. Everything lives in a temporary directory that is
removed on Ctrl-C or SIGTERM, after which it exits 0: stopping the demo is how
it ends, not an error. With ``DEMO_ONCE=1`` it stops by itself once the
messages have crossed (exit 0), or as soon as one did not or it was stopped
before they had (exit 1): what CI runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import synapse_room_connect
from harness.client import JsonDict, MatrixClient, MatrixError, register_with_shared_secret
from harness.connect_api import connect, connections, wait_for_notice
from harness.ferry_helpers import wait_for_pointer
from harness.process import ProcessStartError
from harness.synapse import Homeserver

PASSWORD = "demo-password"


def register(hs: Homeserver, localpart: str, displayname: str) -> MatrixClient:
    return register_with_shared_secret(
        hs.client_url,
        hs.registration_shared_secret,
        localpart,
        password=PASSWORD,
        displayname=displayname,
    )


def timeline(client: MatrixClient, room_id: str) -> list[JsonDict]:
    chunk: list[JsonDict] = client.messages(room_id, dir="b", limit=50)["chunk"]
    return [e for e in reversed(chunk) if e.get("type") == "m.room.message"]


def show(title: str, client: MatrixClient, room_id: str) -> None:
    """The room's messages, each by the name a client shows for its sender."""
    members = client.request("GET", f"/_matrix/client/v3/rooms/{room_id}/joined_members")
    names = {
        user_id: info.get("display_name") or user_id
        for user_id, info in members.get("joined", {}).items()
    }
    print(f"\n  {title}")
    for event in timeline(client, room_id):
        content: dict[str, Any] = event.get("content", {})
        sender = names.get(event["sender"], event["sender"])
        print(f"    {sender:<28} {content.get('body', '')}")


def once() -> bool:
    return os.environ.get("DEMO_ONCE", "") not in ("", "0")


def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM ends the demo as Ctrl-C does, at whatever step it is in:
    waiting for a message to cross can take a while."""
    raise KeyboardInterrupt


def main() -> int:
    base = Path(".demo").resolve()
    base.mkdir(exist_ok=True)
    # Which copy of the module Synapse loads matters when checking a built wheel.
    print(
        f"Starting Synapse with synapse_room_connect {synapse_room_connect.__version__}"
        f" from {synapse_room_connect.__file__} (SQLite)..."
    )
    hs = Homeserver(base, name="demo", module_config={"bot_displayname": "Room connections"})
    signal.signal(signal.SIGTERM, interrupt)
    # Also when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    try:
        hs.start()
        bot = hs.info()["bot_user_id"]
        alice = register(hs, "alice", "Alice")
        bob = register(hs, "bob", "Bob")
        lobby = alice.create_room(name="Lobby", room_alias_name="lobby", preset="public_chat")
        annex = bob.create_room(name="Annex", room_alias_name="annex", preset="public_chat")

        def alias(name: str) -> str:
            return f"#{name}:{hs.server_name}"

        print(f"\nAlice asks to connect {alias('lobby')} to {alias('annex')}...")
        print("  ->", connect(alice, lobby, alias("annex"))["status"])
        print(f"Bob approves from {alias('annex')}...")
        print("  ->", connect(bob, annex, alias("lobby"))["status"])

        # Wait for the bot's announcements so the printout is complete.
        for client, room in ((alice, lobby), (bob, annex)):
            wait_for_notice(client, room, bot, "now connected")
        hello = alice.send_message(lobby, "Hello from the lobby!")
        hi = bob.send_message(annex, "Hi Alice, greetings from the annex.")
        print("Messages sent; waiting for their pointers to cross...")
        wait_for_pointer(bob, annex, hello)
        wait_for_pointer(alice, lobby, hi)
        print("  -> both messages crossed")

        print("\nConnections as the module reports them:")
        for client, room, name in ((alice, lobby, "lobby"), (bob, annex, "annex")):
            for other, view in connections(client, room).items():
                state, via, mode = view["status"], view["via"], view["mode"]
                print(f"  {alias(name)} -> {other}: {state} via {via} ({mode})")

        show(f"{alias('lobby')} timeline:", alice, lobby)
        show(f"{alias('annex')} timeline:", bob, annex)
        print(
            "\n  Lines from 'Name (Room)' are pointers: copies of the other room's\n"
            "  messages, sent by that person's ghost and tied to the originals by\n"
            "  org.matrix.msc2923.pointer."
        )
        if once():
            return 0

        print(
            f"""
Log in with any Matrix client (e.g. Element):
  homeserver: {hs.client_url}
  users:      alice / {PASSWORD}   bob / {PASSWORD}
  rooms:      {alias("lobby")}  {alias("annex")}
  REST:       {hs.client_url}/_synapse/client/org.matrix.msc2923/rooms/<room>/connections
  logs:       {hs.log_path}

Press Ctrl-C to stop."""
        )
        while hs.running:
            time.sleep(1)
    except KeyboardInterrupt:
        if once():
            # DEMO_ONCE promises exit 0 only if the messages crossed; they
            # had not yet (or it would have returned), so a CI job stopped by
            # its timeout fails.
            print("\nDEMO STOPPED before the messages crossed", file=sys.stderr)
            status = 1
    except (TimeoutError, MatrixError, ProcessStartError) as exc:
        # The demo's one promise is that messages cross; say plainly that they did not.
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        print(f"Synapse's log (last lines of {hs.log_path}):", file=sys.stderr)
        print(hs.process.failure_report(40), file=sys.stderr)
        status = 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave Synapse's
        # files behind; stopping it is bounded (SIGKILL after 30 s).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nStopping Synapse...")
        hs.destroy()
        # Only if empty: never delete what someone else put there.
        with contextlib.suppress(OSError):
            base.rmdir()
    return status


if __name__ == "__main__":
    sys.exit(main())
