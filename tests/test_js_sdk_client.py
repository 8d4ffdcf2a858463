"""Connected rooms as matrix-js-sdk shows them: the SDK Element is built on.

``tests/js/timeline.mjs`` logs in with the SDK, runs its first sync and prints
what it makes of a room: each message's sender and the name it displays for
them, and the reactions it counts. The SDK computes names from the room's
member events and counts a reaction key once per sender, exactly as Element
does, so this is what a person sees, without a browser.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.connect_api import unique
from harness.ferry_helpers import connected_pair, wait_for_pointer
from harness.synapse import Homeserver

SCRIPT = Path(__file__).parent / "js" / "timeline.mjs"
DEADLINE_S = 60.0

Snapshot = dict[str, Any]
_SNAPSHOTS = itertools.count()


def js_snapshot(
    hs: Homeserver, user_id: str, token: str, room_id: str, limit: int = 100
) -> Snapshot:
    """One fresh client's view; ``limit`` (its timeline limit) differs per
    snapshot, or Synapse would answer from its cache of the same initial sync."""
    node = shutil.which("node")
    assert node is not None, "node is needed (scripts/test.sh installs the SDK with npm ci)"
    done = subprocess.run(
        [node, str(SCRIPT), hs.client_url, user_id, token, room_id, str(limit)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    snapshot: Snapshot = json.loads(done.stdout)
    return snapshot


def snapshot_until(
    hs: Homeserver, user_id: str, token: str, room_id: str, done: Callable[[Snapshot], bool]
) -> Snapshot:
    """Snapshots until ``done``; each one is a fresh client's view."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        snapshot = js_snapshot(hs, user_id, token, room_id, limit=100 + next(_SNAPSHOTS))
        if done(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"matrix-js-sdk never saw what was expected: {snapshot}")
        time.sleep(1)


def message(snapshot: Snapshot, body: str) -> dict[str, Any] | None:
    return next((m for m in snapshot["messages"] if m["body"] == body), None)


def reactions_on(body: str) -> Callable[[Snapshot], dict[str, int] | None]:
    def read(snapshot: Snapshot) -> dict[str, int] | None:
        found = message(snapshot, body)
        return None if found is None else dict(found["reactions"])

    return read


def react(client: Any, room_id: str, event_id: str, key: str) -> str:
    relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
    event_id_: str = client.send_event(room_id, "m.reaction", {"m.relates_to": relates})
    return event_id_


def test_each_author_is_their_own_sender_and_every_reactor_counts(
    homeserver: Homeserver,
) -> None:
    pair = connected_pair(homeserver)
    carol = homeserver.register(unique("carol"), displayname="Carol")
    pair.bob.invite(pair.room_b, carol.user_id)
    carol.join(pair.room_b)
    from_bob = pair.bob.send_message(pair.room_b, "hello from bob")
    from_carol = carol.send_message(pair.room_b, "hello from carol")
    wait_for_pointer(pair.alice, pair.room_a, from_carol)

    reacted_bob = react(pair.bob, pair.room_b, from_bob, "👍")
    react(carol, pair.room_b, from_bob, "👍")
    counted = reactions_on("hello from bob")
    view = snapshot_until(
        homeserver,
        pair.alice.user_id,
        pair.alice.access_token,
        pair.room_a,
        lambda s: counted(s) == {"👍": 2},
    )

    bob_line, carol_line = message(view, "hello from bob"), message(view, "hello from carol")
    assert bob_line is not None
    assert carol_line is not None
    # Each author speaks as their own ghost, named after them and their room;
    # the text carries no name of its own.
    assert len({bob_line["sender"], carol_line["sender"], pair.bot}) == 3
    assert bob_line["sender_name"].startswith("Bob (")
    assert carol_line["sender_name"].startswith("Carol (")

    # Bob takes his reaction back: one reactor is left, and counted.
    pair.bob.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{pair.room_b}/redact/{reacted_bob}/{unique('txn')}",
        {},
    )
    snapshot_until(
        homeserver,
        pair.alice.user_id,
        pair.alice.access_token,
        pair.room_a,
        lambda s: counted(s) == {"👍": 1},
    )
