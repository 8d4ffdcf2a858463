"""The one place this module touches Synapse internals: anything outside
``synapse.module_api`` and the interfaces documented for modules, including
the SQL on Synapse's own tables.

Every function here was checked against Synapse 1.150.0 and 1.163.2, the ends
of the supported window (the oldest is ``pyproject.toml``'s lower bound, the
newest ``support.NEWEST_TESTED``). Where the two differ a function says how it
copes; what cannot work on a release fails at start-up naming it
(``require_supported_synapse``, and ``require_synapse_tables`` for the SQL);
a newer release than the newest tested starts with a warning naming both.
On a Synapse upgrade, this package is what to check.

- ``support``: the start-up check.
- ``events``: events by ID (as sent, too), edits, reactions, ``internal_metadata``.
- ``state``: power levels, membership, server ACLs.
- ``sending``: the bot's device and batched sends.
- ``ghosts``: registering ghosts, their profiles and push rules.
- ``caches``: in-memory stream caches and positions.
- ``client``: events serialised and filtered as a client gets them.
- ``sql``: queries on Synapse's tables.
- ``appservices``: which application service a user belongs to.
- ``storage``: the database engine and shared Deferreds.
"""

from __future__ import annotations

from synapse_room_connect.synapse_compat.support import (
    NEWEST_TESTED_LABEL,
    UnsupportedSynapseError,
    newer_than_tested,
    require_supported_synapse,
    unsupported,
)

# A release that moved one of these names fails to load the module with an
# error naming that release, not a bare ImportError.
try:
    from synapse_room_connect.synapse_compat.appservices import appservice_of
    from synapse_room_connect.synapse_compat.caches import (
        add_replication_callback,
        cached_version,
        current_stream_position,
        rooms_with_events_since,
        rooms_with_state_changes_since,
    )
    from synapse_room_connect.synapse_compat.client import messages_page, serialize_if_visible
    from synapse_room_connect.synapse_compat.events import (
        annotation_by,
        annotators,
        get_event,
        get_events,
        is_outlier,
        is_redacted,
        is_soft_failed,
        latest_edits,
        stream_ordering_of,
        unredacted,
    )
    from synapse_room_connect.synapse_compat.ghosts import (
        mute_pushes,
        register_ghost,
        registration_verdict,
        set_avatar,
        set_displayname,
    )
    from synapse_room_connect.synapse_compat.lifecycle import before_shutdown
    from synapse_room_connect.synapse_compat.sending import Items, ensure_device, send_chains
    from synapse_room_connect.synapse_compat.sql import require_synapse_tables
    from synapse_room_connect.synapse_compat.state import (
        power_in_state,
        rooms_for_user,
        rooms_invited_to,
        sender_power_at_event,
        server_denied,
        server_in_room,
    )
    from synapse_room_connect.synapse_compat.storage import is_postgres, shared
except ImportError as e:
    raise unsupported(f"{e.name or 'a name'} ({e})") from e


__all__ = [
    "NEWEST_TESTED_LABEL",
    "Items",
    "UnsupportedSynapseError",
    "add_replication_callback",
    "annotation_by",
    "annotators",
    "appservice_of",
    "before_shutdown",
    "cached_version",
    "current_stream_position",
    "ensure_device",
    "get_event",
    "get_events",
    "is_outlier",
    "is_postgres",
    "is_redacted",
    "is_soft_failed",
    "latest_edits",
    "messages_page",
    "mute_pushes",
    "newer_than_tested",
    "power_in_state",
    "register_ghost",
    "registration_verdict",
    "require_supported_synapse",
    "require_synapse_tables",
    "rooms_for_user",
    "rooms_invited_to",
    "rooms_with_events_since",
    "rooms_with_state_changes_since",
    "send_chains",
    "sender_power_at_event",
    "serialize_if_visible",
    "server_denied",
    "server_in_room",
    "set_avatar",
    "set_displayname",
    "shared",
    "stream_ordering_of",
    "unredacted",
]
