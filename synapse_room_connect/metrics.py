"""Prometheus metrics, named and labelled the way Synapse names its own.

They land in the default registry, which Synapse serves on its metrics
listener (``enable_metrics: true``).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

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

ferried_events = Counter(
    "synapse_room_connect_ferried_events_total",
    "Events the ferry carried into a connected room, per kind",
    labelnames=[SERVER_NAME_LABEL, "kind"],
)

ferry_failures = Counter(
    "synapse_room_connect_ferry_failures_total",
    "Events the ferry failed to carry into a connected room",
    labelnames=[SERVER_NAME_LABEL],
)

ferry_withheld = Counter(
    "synapse_room_connect_ferry_withheld_total",
    "Events not carried because the target room bans their sender or its server",
    labelnames=[SERVER_NAME_LABEL, "reason"],
)

ferry_queue_depth = Gauge(
    "synapse_room_connect_ferry_queue_depth",
    "Events the ferry's latest read found to carry (at most 100 a read); 0 once caught up",
    labelnames=[SERVER_NAME_LABEL],
)

ferry_held_events = Gauge(
    "synapse_room_connect_ferry_held_events",
    "Events the ferry holds back until a relation's counterpart, which another"
    " direction is still to send, exists (60 s at most each)",
    labelnames=[SERVER_NAME_LABEL],
)

ferry_latency = Histogram(
    "synapse_room_connect_ferry_latency_seconds",
    "Time from an original's origin_server_ts to its pointer being sent",
    labelnames=[SERVER_NAME_LABEL],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

ferry_batch_size = Histogram(
    "synapse_room_connect_ferry_batch_size",
    "Counterparts the ferry persisted together in one send",
    labelnames=[SERVER_NAME_LABEL],
    buckets=(1, 2, 5, 10, 20, 50),
)

ferry_rows_read = Counter(
    "synapse_room_connect_rows_read_total",
    "Rows the feed's and the ferry's reads returned, per query (Synapse's desc)",
    labelnames=[SERVER_NAME_LABEL, "desc"],
)

expansions = Counter(
    "synapse_room_connect_expansions_total",
    "Pointers served to clients, per result (original or placeholder)",
    labelnames=[SERVER_NAME_LABEL, "result"],
)

admin_actions = Counter(
    "synapse_room_connect_admin_actions_total",
    "Connects and revokes a homeserver admin made on behalf of a room, per action and outcome",
    labelnames=[SERVER_NAME_LABEL, "action", "outcome"],
)
