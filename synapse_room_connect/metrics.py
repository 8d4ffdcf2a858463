"""Prometheus metrics, named and labelled the way Synapse names its own.

They land in the default registry, which Synapse serves on its metrics
listener (``enable_metrics: true``).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

# Synapse labels every homeserver-scoped metric with the server name, so one
# Prometheus can scrape several homeservers without the series colliding.
SERVER_NAME_LABEL: Final = "server_name"

transitions = Counter(
    "synapse_room_connect_transitions_total",
    "Connection status changes seen by the acting process, per new status",
    labelnames=[SERVER_NAME_LABEL, "status"],
)

ignored_connection_events = Counter(
    "synapse_room_connect_ignored_connection_events_total",
    "Connection state events that are no consent, per reason",
    labelnames=[SERVER_NAME_LABEL, "reason"],
)

refused_connection_events = Counter(
    "synapse_room_connect_refused_connection_events_total",
    "Locally sent connection events refused at send time, per errcode",
    labelnames=[SERVER_NAME_LABEL, "errcode"],
)

commands = Counter(
    "synapse_room_connect_commands_total",
    "!connect chat commands handled, per verb and outcome",
    labelnames=[SERVER_NAME_LABEL, "verb", "outcome"],
)
