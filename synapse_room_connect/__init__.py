"""synapse-room-connect: MSC2923 Matrix-to-Matrix room connections for Synapse."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from synapse_room_connect.module import RoomConnectModule

__all__ = ["RoomConnectModule", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so the fan-out client (synapse_room_connect.fanout) starts without
    # importing Synapse; Synapse's loader resolves the class the same way.
    if name == "RoomConnectModule":
        from synapse_room_connect.module import RoomConnectModule

        return RoomConnectModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
