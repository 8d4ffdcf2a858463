"""Which new event goes where: the ferry, reconciliation, commands or invites."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from synapse_room_connect.constants import CONNECTION_EVENT_TYPE
from synapse_room_connect.router import ACCEPT_INVITE_DELAY_MS, EventRouter
from synapse_room_connect.store import NewEvent
from tests.unit.stand_ins import Host, RecordingBot, run_async

BOT = "@bot:hs"
ALICE = "@alice:hs"
A, B, ELSEWHERE = "!a:hs", "!b:hs", "!elsewhere:hs"


@attrs.frozen
class StoredEvent:
    event_id: str
    room_id: str
    content: Mapping[str, Any]
    state_key: str | None = None
    sender: str = ALICE


class Ferry:
    def __init__(self) -> None:
        self.active_rooms = frozenset({A, B})
        self.woken_for: list[set[str]] = []

    def events_in(self, room_ids: Iterable[str]) -> None:
        self.woken_for.append(set(room_ids))


class Reconciler:
    def __init__(self) -> None:
        self.changed: list[str] = []

    def room_changed(self, room_id: str) -> None:
        self.changed.append(room_id)


class Commands:
    async def handle(self, event: Any) -> None:
        raise AssertionError("commands run in the background, not in the feed's loop")


class Setup:
    def __init__(self) -> None:
        self.host = Host()
        self.bot = RecordingBot(BOT)
        self.bot.rooms = frozenset({A})
        self.ferry = Ferry()
        self.reconciler = Reconciler()
        self.commands = Commands()
        self.stored: dict[str, StoredEvent] = {}
        self.fetched: list[list[str]] = []

        async def fetch(event_ids: Sequence[str]) -> Mapping[str, Any]:
            self.fetched.append(list(event_ids))
            return {i: self.stored[i] for i in event_ids if i in self.stored}

        self.router = EventRouter(
            self.host, self.bot, self.ferry, self.reconciler, self.commands, fetch
        )

    def message(self, event_id: str, room_id: str, body: str, sender: str = ALICE) -> NewEvent:
        self.stored[event_id] = StoredEvent(event_id, room_id, {"body": body})
        return NewEvent(1, event_id, room_id, "m.room.message", sender)

    def background(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [(desc, args) for desc, _, args in self.host.background]


def state(etype: str, room_id: str, state_key: str, membership: str | None = None) -> NewEvent:
    return NewEvent(2, f"${etype}-{room_id}", room_id, etype, ALICE, state_key, membership)


@run_async
async def test_commands_in_bot_rooms_go_to_the_background() -> None:
    s = Setup()
    await s.router.start()
    await s.router.on_new_events(
        [
            s.message("$cmd", A, "!connect list"),
            s.message("$chat", A, "hello"),
            s.message("$elsewhere", ELSEWHERE, "!connect list"),
            s.message("$own", A, "!connect help", sender=BOT),
        ]
    )
    # Only rooms the bot is in are read, and the bot's own messages never.
    assert s.fetched == [["$cmd", "$chat"]]
    assert s.background() == [("room_connect_command", (s.stored["$cmd"],))]
    assert s.reconciler.changed == []


@run_async
async def test_the_ferry_hears_of_every_room_but_not_of_the_bots_own_events() -> None:
    s = Setup()
    await s.router.on_new_events([s.message("$1", A, "hi"), s.message("$2", B, "hi", sender=BOT)])
    assert s.ferry.woken_for == [{A}]
    # Before start() the bot's rooms are unknown: no command is looked for.
    assert s.fetched == []


@run_async
async def test_connection_and_trait_changes_reach_reconciliation() -> None:
    s = Setup()
    await s.router.on_new_events(
        [
            state(CONNECTION_EVENT_TYPE, A, B),
            state("m.room.encryption", ELSEWHERE, ""),
            state("m.room.topic", A, ""),
            state("m.room.member", A, ALICE, "join"),
        ]
    )
    assert s.reconciler.changed == [A, B, ELSEWHERE]
    assert s.background() == []


@run_async
async def test_the_bots_membership_invites_and_joins() -> None:
    s = Setup()
    s.bot.rooms = frozenset({A, B})
    await s.router.on_new_events(
        [state("m.room.member", B, BOT, "invite"), state("m.room.member", A, BOT, "join")]
    )
    assert s.background() == [("room_connect_accept_invite", (B, ALICE))]
    assert s.reconciler.changed == [A]
    await s.host.run_background()
    assert s.bot.accepted == [(B, ALICE)]
    # The bot's rooms were re-read, so commands in B are now looked for.
    assert s.router.watches_any([B])
    assert not s.router.watches_any(["!elsewhere:hs1"])


@run_async
async def test_federated_invites_of_the_bot_are_accepted_later() -> None:
    s = Setup()
    for_bot = StoredEvent("$inv", B, {"membership": "invite"}, state_key=BOT)
    for_alice = StoredEvent("$inv2", B, {"membership": "invite"}, state_key=ALICE)
    assert await s.router.on_federated_invite(for_bot) == "NOT_SPAM"  # type: ignore[arg-type]
    assert await s.router.on_federated_invite(for_alice) == "NOT_SPAM"  # type: ignore[arg-type]
    assert len(s.host.delayed) == 1
    delay, _, args, desc = s.host.delayed[0]
    assert (delay, args, desc) == (ACCEPT_INVITE_DELAY_MS, (B, ALICE), "room_connect_accept_invite")


@run_async
async def test_ghosts_are_neither_commands_nor_work_and_profiles_are_followed() -> None:
    ghost = "@_ghost_x:hs"
    s = Setup()
    s.bot.rooms = frozenset({A, B})

    async def fetch_nothing(event_ids: Sequence[str]) -> Mapping[str, Any]:
        raise AssertionError(f"a ghost's message was read as a command: {event_ids}")

    changed: list[tuple[str, str]] = []

    async def person_changed(room_id: str, user_id: str) -> None:
        changed.append((room_id, user_id))

    s.router = EventRouter(
        s.host,
        s.bot,
        s.ferry,
        s.reconciler,
        s.commands,
        fetch_nothing,
        is_ghost=lambda user_id: user_id.startswith("@_ghost_"),
        person_changed=person_changed,
    )
    await s.router.start()
    await s.router.on_new_events(
        [
            s.message("$echo", B, "!connect list", sender=ghost),
            state("m.room.member", A, ALICE, "join"),
            state("m.room.member", A, ghost, "join"),
            state("m.room.member", ELSEWHERE, ALICE, "join"),
        ]
    )
    # The ghost's message wakes no ferry pass and is no command; of the member
    # events only a person's, in a connected room, has a profile to follow.
    assert s.ferry.woken_for == [{A, ELSEWHERE}]
    assert s.background() == [("room_connect_ghost_profile", (A, ALICE))]
