"""Ghosts in Synapse's user directory, on real Synapse.

By default a ghost that joins a private room is paired there with every
member in ``users_who_share_private_rooms``: a row per member and direction,
which at 1000 members is 1000 rows per ghost. An application service
registration whose user namespace covers the ghosts (docs/admin.md, "Large
rooms") makes Synapse leave them out of the user directory, and the ferry
goes on as before.
"""

from __future__ import annotations

import sqlite3

from harness.appservice import AppService, register_appservice
from harness.ferry_helpers import connected_pair, wait_for_pointer
from harness.synapse import Homeserver, HomeserverFactory
from harness.user_directory import wait_for_user_directory

GHOST_PREFIX = "@_room_connect_"


def shared_private_rooms(hs: Homeserver, user_id: str) -> int:
    """Rows pairing ``user_id`` with someone who shares a private room."""
    db = sqlite3.connect(f"file:{hs.sqlite_path}?mode=ro", uri=True)
    try:
        (rows,) = db.execute(
            "SELECT count(*) FROM users_who_share_private_rooms"
            " WHERE user_id = ? OR other_user_id = ?",
            (user_id, user_id),
        ).fetchone()
    finally:
        db.close()
    return int(rows)


def ghosts_of_a_conversation(hs: Homeserver) -> tuple[str, list[str]]:
    """A message each way across a connected pair of private rooms: the
    bot's ID and the two ghosts that sent the counterparts."""
    pair = connected_pair(hs)
    to_b = pair.alice.send_message(pair.room_a, "hello from A")
    to_a = pair.bob.send_message(pair.room_b, "hello from B")
    ghosts = [
        wait_for_pointer(pair.bob, pair.room_b, to_b)["sender"],
        wait_for_pointer(pair.alice, pair.room_a, to_a)["sender"],
    ]
    assert all(g.startswith(GHOST_PREFIX) for g in ghosts), ghosts
    # Synapse fills the directory in the background, after the events.
    assert wait_for_user_directory(hs, limit_s=60)[1] == 0
    return pair.bot, ghosts


def test_by_default_a_ghost_shares_its_private_rooms_in_the_user_directory(
    homeserver: Homeserver,
) -> None:
    _, ghosts = ghosts_of_a_conversation(homeserver)
    # Each ghost is paired with the room's members: the bot and the person
    # there, at least (and the other way round).
    assert all(shared_private_rooms(homeserver, g) >= 4 for g in ghosts)


def test_an_application_service_namespace_keeps_ghosts_out_of_the_user_directory(
    make_homeserver: HomeserverFactory,
) -> None:
    hs = make_homeserver(name="ghost-namespace", start=False)
    register_appservice(
        hs,
        AppService(
            id="room-connect-ghosts",
            sender_localpart="room-connect-ghosts",
            user_regex=f"{GHOST_PREFIX}.*",
        ),
    )
    hs.start()

    bot, ghosts = ghosts_of_a_conversation(hs)

    assert [shared_private_rooms(hs, g) for g in ghosts] == [0, 0]
    # The directory did process those rooms: the bot shares them with people.
    assert shared_private_rooms(hs, bot) >= 4
