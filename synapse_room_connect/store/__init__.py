"""The module's store: one object over its own tables and the reads of
Synapse's, composed from one part per job.

- ``store_schema``: creating and migrating the tables, and running queries.
- ``store_connections``: the connection cache.
- ``store_ferry``: the ferry's cursors and pointer mappings.
- ``store_events``: reads of Synapse's events and transaction IDs.
"""

from __future__ import annotations

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
from synapse_room_connect.store.schema import SCHEMA_VERSION, SchemaTooNewError

__all__ = [
    "SCHEMA_VERSION",
    "ActiveTarget",
    "CachedConnection",
    "FerriedPointer",
    "FerryRecord",
    "NewEvent",
    "Previous",
    "SchemaTooNewError",
    "SourceEvent",
    "Store",
    "TimelineRead",
    "TimelineRow",
]


class Store(ConnectionCacheStore, FerryRecordsStore, SynapseEventsStore):
    """Typed access to the module's tables. Every method waits for migrations."""
