"""Whether a room's rules would refuse a join, from state this server holds.

Asking Synapse for a join it must refuse is not free: it builds the event
and runs the auth checks before saying no, and the bot waits before it gives
up (bot.py). A request to an invite-only room costs that on every
reconciliation of it, so the bot does not try a join the state already
answers. Only certain answers count: a ban, or an invite-only (or knock)
room without an invite, where the auth rules allow no other way in. A room
this server holds no state of (on another server), or with restricted join
rules, is for the join itself to answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from synapse.module_api import EventBase

from synapse_room_connect.bot.notices import JoinRefusal

# Join rules under which only an invite lets a user in. "private" is
# reserved by the spec and refused by every join.
_INVITE_ONLY: Final = frozenset({"invite", "knock", "private"})


def state_keys(user_id: str) -> list[tuple[str, str]]:
    """What ``refusal`` reads: fetch these in the same state request."""
    return [("m.room.member", user_id), ("m.room.join_rules", "")]


def membership_of(state: Mapping[tuple[str, str], EventBase], user_id: str) -> str | None:
    member = state.get(("m.room.member", user_id))
    return None if member is None else str(member.content.get("membership"))


def is_public(state: Mapping[tuple[str, str], EventBase]) -> bool:
    return _join_rule(state) == "public"


def refusal(state: Mapping[tuple[str, str], EventBase], user_id: str) -> JoinRefusal | None:
    """Why a join of ``user_id`` is certain to be refused, or None if it may pass."""
    membership = membership_of(state, user_id)
    if membership == "ban":
        return JoinRefusal.BANNED
    if membership in ("join", "invite"):
        return None
    if _join_rule(state) in _INVITE_ONLY:
        return JoinRefusal.NOT_INVITED
    return None


def _join_rule(state: Mapping[tuple[str, str], EventBase]) -> str | None:
    event = state.get(("m.room.join_rules", ""))
    rule = None if event is None else event.content.get("join_rule")
    return rule if isinstance(rule, str) else None
