"""Command line of the fan-out reference client.

    python -m synapse_room_connect.fanout send --homeserver URL --user @me:hs \\
        (--password PW | --access-token TOKEN) --room '!room:hs' \\
        [--reply-to EVENT | --edit EVENT] TEXT
    python -m synapse_room_connect.fanout connections ... --room ROOM
    python -m synapse_room_connect.fanout timeline ... --room ROOM

The password or token may come from MSC2923_FANOUT_PASSWORD /
MSC2923_FANOUT_ACCESS_TOKEN instead, keeping it out of the process list.
Results are JSON on stdout; errors go to stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from synapse_room_connect.fanout.client import FanoutClient
from synapse_room_connect.fanout.errors import FanoutError

PASSWORD_ENV = "MSC2923_FANOUT_PASSWORD"
TOKEN_ENV = "MSC2923_FANOUT_ACCESS_TOKEN"


def default_store_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "msc2923-fanout"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--homeserver", required=True, help="client-server API base URL")
    common.add_argument("--user", required=True, help="full user ID, e.g. @alice:example.org")
    auth = common.add_mutually_exclusive_group()
    auth.add_argument("--password", help=f"or set {PASSWORD_ENV}")
    auth.add_argument(
        "--access-token", help=f"a token of a device only this client uses; or {TOKEN_ENV}"
    )
    common.add_argument(
        "--store",
        type=Path,
        default=None,
        help="directory for the session, the encryption keys and the fan-out map "
        f"(default: {default_store_dir()})",
    )
    common.add_argument("--room", required=True, help="room ID the message is written in")
    common.add_argument("--verbose", "-v", action="store_true", help="log progress to stderr")

    parser = argparse.ArgumentParser(
        prog="python -m synapse_room_connect.fanout",
        description="MSC2923 fan-out client for connections with end-to-end encrypted rooms.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser(
        "send", parents=[common], help="send a message to a room and its connected rooms"
    )
    relation = send.add_mutually_exclusive_group()
    relation.add_argument("--reply-to", metavar="EVENT", help="reply to this event of --room")
    relation.add_argument("--edit", metavar="EVENT", help="edit this message of yours in --room")
    send.add_argument(
        "--allow-unencrypted",
        action="store_true",
        help="also send to connected rooms that are not encrypted",
    )
    send.add_argument("text", help="the message")
    commands.add_parser(
        "connections", parents=[common], help="list the room's connections (module REST API)"
    )
    timeline = commands.add_parser(
        "timeline",
        parents=[common],
        help="print the room's merged timeline with its connected rooms, as JSON lines",
    )
    timeline.add_argument(
        "--wait", type=float, default=0, help="keep syncing this many seconds first"
    )
    return parser


async def run(args: argparse.Namespace) -> Any:
    password = args.password or os.environ.get(PASSWORD_ENV)
    token = args.access_token or (None if args.password else os.environ.get(TOKEN_ENV))
    if password is None and token is None:
        raise FanoutError(f"give --password or --access-token (or {PASSWORD_ENV}/{TOKEN_ENV})")
    store = args.store or default_store_dir()
    allow = bool(getattr(args, "allow_unencrypted", False))
    async with FanoutClient(args.homeserver, args.user, store, allow_unencrypted=allow) as client:
        if token is not None:
            await client.login(access_token=token)
        else:
            await client.login(password=password)
        await client.sync()
        if args.command == "send":
            result = await client.send_text(
                args.room, args.text, reply_to=args.reply_to, edit=args.edit
            )
            return result.to_json()
        if args.command == "connections":
            return [attrs.asdict(c) for c in await client.connections(args.room)]
        if args.wait > 0:
            with contextlib.suppress(FanoutError):  # waited as long as asked
                await client.sync_until(lambda _: False, timeout=args.wait)
        return [attrs.asdict(e) for e in await client.timeline(args.room)]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        result = asyncio.run(run(args))
    except FanoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "timeline":
        for entry in result:
            print(json.dumps(entry, sort_keys=True))
    else:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
