"""Failed attempts at ferrying an event into a target room, counted per
(event, target room) until the event is sent or given up on.

A failure may be transient (Synapse busy, a database hiccup): the direction
stops at the event and reads it again later. It may also be permanent (e.g.
the bot was kicked), and that must not wedge the connection forever: after
``MAX_ATTEMPTS`` the event is given up on, loudly, and what follows it goes
on. Only memory: a restarted ferry counts afresh.
"""

from __future__ import annotations

import logging
from typing import Final

import attrs
from synapse.module_api import EventBase

from synapse_room_connect import metrics

logger = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 5


@attrs.define
class FailedAttempts:
    _server_name: str
    # (event, target) -> failed attempts so far, for events still pending.
    _counts: dict[tuple[str, str], int] = attrs.field(init=False, factory=dict)

    def give_up(self, event: EventBase, target: str, e: Exception) -> bool:
        """Count a failed attempt at ``event``; whether it was the last one
        allowed, so the event is to be skipped rather than tried again."""
        metrics.ferry_failures.labels(self._server_name).inc()
        key = (event.event_id, target)
        attempts = self._counts.pop(key, 0) + 1
        if attempts >= MAX_ATTEMPTS:
            logger.error(
                "Giving up ferrying %s from %s into %s after %d attempts: %s",
                event.event_id,
                event.room_id,
                target,
                attempts,
                e,
            )
            return True
        self._counts[key] = attempts
        logger.warning(
            "Failed to ferry %s from %s into %s (attempt %d of %d): %s",
            event.event_id,
            event.room_id,
            target,
            attempts,
            MAX_ATTEMPTS,
            e,
        )
        return False

    def sent(self, event_id: str, target: str) -> None:
        """The event made it into ``target``: its failures are forgotten."""
        self._counts.pop((event_id, target), None)
