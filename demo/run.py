"""A local homeserver with the module, two connected rooms, messages crossing.

Run with ``make demo``. Everything lives in a temporary directory that is
removed on Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

from harness.client import JsonDict, MatrixClient, register_with_shared_secret
from harness.connect_api import connect, connections, wait_for_notice
from harness.ferry_helpers import wait_for_pointer
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


def show(title: str, events: list[JsonDict]) -> None:
    print(f"\n  {title}")
    for event in events:
        content: dict[str, Any] = event.get("content", {})
        print(f"    {event['sender']:<40} {content.get('body', '')}")


def main() -> int:
    base = Path(".demo").resolve()
    base.mkdir(exist_ok=True)
    print("Starting Synapse with synapse_room_connect (SQLite)...")
    hs = Homeserver(base, name="demo", module_config={"bot_displayname": "Room connections"})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Also when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        hs.start()
        bot = hs.info()["bot_user_id"]
        alice = register(hs, "alice", "Alice")
        bob = register(hs, "bob", "Bob")
        lobby = alice.create_room(name="Lobby", room_alias_name="lobby", preset="public_chat")
        annex = bob.create_room(name="Annex", room_alias_name="annex", preset="public_chat")
        alias = lambda name: f"#{name}:{hs.server_name}"  # noqa: E731

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

        print("\nConnections as the module reports them:")
        for client, room, name in ((alice, lobby, "lobby"), (bob, annex, "annex")):
            for other, view in connections(client, room).items():
                status, via, mode = view["status"], view["via"], view["mode"]
                print(f"  {alias(name)} -> {other}: {status} via {via} ({mode})")

        show(f"{alias('lobby')} timeline:", timeline(alice, lobby))
        show(f"{alias('annex')} timeline:", timeline(bob, annex))
        print(
            "\n  Lines from the bot that start with a name are pointers: copies of the\n"
            "  other room's messages, tied to the originals by org.matrix.msc2923.pointer."
        )

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
        while not stop.is_set() and hs.running:
            stop.wait(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nStopping Synapse...")
        hs.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
