"""Synapse's user directory on a harness homeserver's SQLite database.

Synapse updates the directory in the background, after the events: after a
burst of joins into a large room it lags by minutes, so whoever counts its
rows waits for it first.
"""

from __future__ import annotations

import sqlite3
import time

from harness.synapse import Homeserver


def user_directory_behind(hs: Homeserver) -> int:
    """How many event stream positions the directory has still to process."""
    db = sqlite3.connect(f"file:{hs.sqlite_path}?mode=ro", uri=True)
    try:
        (position,) = db.execute("SELECT stream_id FROM user_directory_stream_pos").fetchone()
        (newest,) = db.execute("SELECT MAX(stream_ordering) FROM events").fetchone()
    finally:
        db.close()
    return max(int(newest or 0) - int(position or 0), 0)


def wait_for_user_directory(hs: Homeserver, limit_s: float) -> tuple[float, int]:
    """Until the directory has caught up, at most ``limit_s``: how long it
    took, and how far behind it still is (0: caught up)."""
    started = time.monotonic()
    behind = user_directory_behind(hs)
    while behind and time.monotonic() - started < limit_s:
        time.sleep(0.2)
        behind = user_directory_behind(hs)
    return time.monotonic() - started, behind
