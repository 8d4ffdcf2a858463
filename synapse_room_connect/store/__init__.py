"""The module's store: one object over its own tables and the reads of
Synapse's, composed from one part per job.

- ``schema``: creating and migrating the tables, and running queries.
- ``connections``: the connection cache.
- ``ferry``: the ferry's cursors and pointer mappings.
- ``events``: reads of Synapse's events and transaction IDs.
- ``commands``: how far ``!connect`` commands have been answered.
- ``ghosts``: the ghosts registered, and the rooms told they cannot join.
- ``admin``: the homeserver admin's whole-server reads.
- ``leases``: which ferry process may send for which connection.
- ``records``: the records of Synapse's events the store returns.
"""

from __future__ import annotations

from synapse_room_connect.store.admin import AdminQueriesStore
from synapse_room_connect.store.commands import CommandCursorStore
from synapse_room_connect.store.connections import (
    ActiveTarget,
    CachedConnection,
    ConnectionCacheStore,
    Previous,
)
from synapse_room_connect.store.events import (
    NewEvent,
    SynapseEventsStore,
    TimelineRead,
    TimelineRow,
)
from synapse_room_connect.store.ferry import (
    FerriedPointer,
    FerryRecord,
    FerryRecordsStore,
    SourceEvent,
)
from synapse_room_connect.store.ghosts import GhostRecord, GhostsStore
from synapse_room_connect.store.leases import FerryLeaseStore, LeaseRow
from synapse_room_connect.store.schema import SCHEMA_VERSION, SchemaTooNewError

__all__ = [
    "SCHEMA_VERSION",
    "ActiveTarget",
    "CachedConnection",
    "FerriedPointer",
    "FerryRecord",
    "GhostRecord",
    "LeaseRow",
    "NewEvent",
    "Previous",
    "SchemaTooNewError",
    "SourceEvent",
    "Store",
    "TimelineRead",
    "TimelineRow",
]


class Store(
    ConnectionCacheStore,
    FerryRecordsStore,
    SynapseEventsStore,
    CommandCursorStore,
    GhostsStore,
    AdminQueriesStore,
    FerryLeaseStore,
):
    """Typed access to the module's tables. Every method waits for migrations."""
