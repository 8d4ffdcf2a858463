"""Which process carries which connection when the ferry runs on several.

The ``worker`` option names one process or a list of them, the way Synapse's
``federation_sender_instances`` and ``pusher_instances`` do. Every listed
process runs the feed and ferries its share of the connections; the first one
(the coordinator) alone also reconciles connections, accepts the bot's
invites and answers commands, since those must happen once per server.

The share is chosen as Synapse chooses a federation sender for a destination:
sha256 of a key, read as a little-endian integer, modulo the number of
instances. The key is the *unordered* room pair, so both directions of a
connection stay on one process: a reply travelling back across a connection
then finds the pointer row its own process wrote, in the order it wrote it.

A new owner reads each direction from the cursor the previous owner
recorded with its pointers, and checks Synapse's transaction IDs (one per
original and target, shared across processes because every instance sends as
the same bot device) before sending, so whatever the old owner sent but did
not record is not sent again. Two owners running *at the same time*, as in a
rolling restart, are not made safe by transaction IDs alone: both may pass
that check, and Synapse then drops the second copy of an event at persist
time while the rest of that copy's chain still names the dropped event as its
predecessor. So the hash only says which process *wants* a connection; it
sends for it only while it holds the connection's lease (ferry_lease.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import attrs

# How the main process is named in a list, as in Synapse's ``instance_map``.
MAIN_PROCESS = "main"


def instance_name(worker_name: str | None) -> str:
    """The name a process has in the list: its ``worker_name``, or ``main``."""
    return MAIN_PROCESS if worker_name is None else worker_name


def pair_key(room_a: str, room_b: str) -> str:
    """One key for both directions of a connection."""
    first, second = sorted((room_a, room_b))
    return f"{first}\n{second}"


def shard_of(key: str, count: int) -> int:
    """Index in ``0..count-1`` for ``key``: stable across processes and releases."""
    if count < 1:
        raise ValueError("at least one instance is needed")
    digest = hashlib.sha256(key.encode("utf8")).digest()
    return int.from_bytes(digest, byteorder="little") % count


@attrs.frozen
class FerryInstances:
    """The processes that ferry, in the configured order; the first coordinates."""

    names: tuple[str, ...] = (MAIN_PROCESS,)

    def __attrs_post_init__(self) -> None:
        if not self.names:
            raise ValueError("at least one ferry instance is needed")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"ferry instances listed twice: {list(self.names)}")

    @classmethod
    def from_option(cls, value: str | Sequence[str] | None) -> FerryInstances:
        """From the ``worker`` option: null, one name, or a list of names."""
        if value is None or isinstance(value, str):
            return cls((instance_name(value),))
        return cls(tuple(value))

    @property
    def coordinator(self) -> str:
        return self.names[0]

    def is_coordinator(self, worker_name: str | None) -> bool:
        return instance_name(worker_name) == self.coordinator

    def ferries(self, worker_name: str | None) -> bool:
        """Whether this process runs the feed and a share of the ferry."""
        return instance_name(worker_name) in self.names

    @property
    def sharded(self) -> bool:
        return len(self.names) > 1

    def owner(self, room_a: str, room_b: str) -> str:
        """The instance that carries the connection between these rooms, both ways."""
        if len(self.names) == 1:
            return self.names[0]
        return self.names[shard_of(pair_key(room_a, room_b), len(self.names))]

    def owns(self, worker_name: str | None, room_a: str, room_b: str) -> bool:
        return self.owner(room_a, room_b) == instance_name(worker_name)
