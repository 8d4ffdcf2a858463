"""The module's store: one object over its own tables and the reads of
Synapse's, composed from one part per job.

- ``store_schema``: creating and migrating the tables, and running queries.
- ``store_connections``: the connection cache.
- ``store_ferry``: the ferry's cursors and pointer mappings.
- ``store_events``: reads of Synapse's events and transaction IDs.
- ``store_leases``: which ferry process may send for which connection.
"""

from __future__ import annotations

from synapse_room_connect.store_connections import (
    ActiveTarget,
    CachedConnection,
    ConnectionCacheStore,
    Previous,
)
from synapse_room_connect.store_events import (
    NewEvent,
    SynapseEventsStore,
    TimelineRead,
    TimelineRow,
)
from synapse_room_connect.store_ferry import (
    FerriedPointer,
    FerryRecord,
    FerryRecordsStore,
    SourceEvent,
)
from synapse_room_connect.store_leases import FerryLeaseStore, LeaseRow
from synapse_room_connect.store_schema import SCHEMA_VERSION, SchemaTooNewError

__all__ = [
    "SCHEMA_VERSION",
    "ActiveTarget",
    "CachedConnection",
    "FerriedPointer",
    "FerryRecord",
    "LeaseRow",
    "NewEvent",
    "Previous",
    "SchemaTooNewError",
    "SourceEvent",
    "Store",
    "TimelineRead",
    "TimelineRow",
]


class Store(ConnectionCacheStore, FerryRecordsStore, SynapseEventsStore, FerryLeaseStore):
    """Typed access to the module's tables. Every method waits for migrations."""
