"""Protocol identifiers. Unstable prefix per MSC2324 until MSC2923 is merged."""

from typing import Final

PREFIX: Final = "org.matrix.msc2923"

CONNECTION_EVENT_TYPE: Final = f"{PREFIX}.connection"

# State whose change can flip a connection's guard or mode.
TRAIT_EVENT_TYPES: Final = frozenset(
    {"m.room.encryption", "m.room.join_rules", "m.room.history_visibility"}
)

# State changes the ferry must not carry events past before it knows their
# effect on the connection (ferry/crossing.py).
FENCE_EVENT_TYPES: Final = frozenset({CONNECTION_EVENT_TYPE, *TRAIT_EVENT_TYPES})

# Module HTTP resources live under /_synapse/client: modules may not register
# paths under /_matrix/client.
HTTP_ROOT: Final = f"/_synapse/client/{PREFIX}"

DEFAULT_BOT_LOCALPART: Final = "room-connect"
# Ghosts' localparts start with this. A leading underscore is what Synapse
# already refuses to register over the client API (it is kept for
# application services), so the namespace is reserved twice.
DEFAULT_GHOST_LOCALPART_PREFIX: Final = "_room_connect_"

# Acknowledgements a side puts in its content to allow a mismatched pair.
ACK_ENCRYPTION: Final = "encryption_mismatch"
ACK_VISIBILITY: Final = "visibility_mismatch"

# Room state is replicated to every server in the room: keep requests small.
MAX_CONNECTION_CONTENT_BYTES: Final = 4096

# Content key of a pointer event: where the original lives.
POINTER_KEY: Final = f"{PREFIX}.pointer"

# unsigned key under which clients find a pointer's original (or placeholder).
ORIGINAL_KEY: Final = f"{PREFIX}.original"
