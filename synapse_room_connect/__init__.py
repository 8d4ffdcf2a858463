"""synapse-room-connect: MSC2923 Matrix-to-Matrix room connections for Synapse."""

__version__ = "0.1.0"

from synapse_room_connect.module import RoomConnectModule

__all__ = ["RoomConnectModule", "__version__"]
