"""Client-side fan-out for MSC2923 connections with an end-to-end encrypted room.

When either room of a connection is encrypted the server carries nothing
(mode ``client_fanout``): it cannot read the messages, and must not. A client
that supports the connection sends each message itself, encrypted, to the
room and to every connected room, tagged inside the encrypted content so
readers can merge the copies. See ``docs/fanout.md``.

- ``protocol``: the tag and the contents sent (pure).
- ``merge``: merging decrypted copies into one timeline (pure).
- ``mapping``: fan-out id -> event per room, persisted as JSON.
- ``client``: the reference client on matrix-nio with end-to-end encryption
  (``pip install 'synapse-room-connect[fanout]'``); CLI:
  ``python -m synapse_room_connect.fanout --help``. Its parts: ``session``
  (login, the saved session), ``connections`` (the module's REST API, which
  rooms get a copy), ``reading`` (sync, decryption, finding copies),
  ``sending`` (the copies), ``errors``.

The Synapse module never imports this subpackage, so Synapse needs none of
its dependencies; importing this package (or ``protocol``/``merge``/
``mapping``) needs none either, only ``client`` (with the parts it is built
from) and the CLI need matrix-nio.
"""

from synapse_room_connect.fanout.merge import TimelineEntry, merge_timeline
from synapse_room_connect.fanout.protocol import FANOUT_KEY, FanoutTag, tag_of

__all__ = ["FANOUT_KEY", "FanoutTag", "TimelineEntry", "merge_timeline", "tag_of"]
