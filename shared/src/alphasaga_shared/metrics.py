"""Prometheus metrics shared by every service (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("alphasaga_messages_total", "Stream entries consumed, by outcome", ["stream", "outcome"])
PUBLISHED = Counter("alphasaga_published_total", "Messages published to streams")
RECLAIMED = Counter("alphasaga_reclaimed_total", "Idle pending entries claimed from other consumers", ["stream"])
LOST = Counter(
    "alphasaga_lost_pending_total",
    "Pending entries found deleted (trimmed) before they were processed; should stay 0",
    ["stream"],
)
HANDLER_SECONDS = Histogram(
    "alphasaga_handler_seconds",
    "Time spent in a message handler",
    ["stream"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
RELAYED = Counter("alphasaga_relayed_total", "Outbox messages published by the relay")
RELAY_LAG = Gauge("alphasaga_relay_lag_seconds", "Age of the newest outbox row the relay published")
SAGAS = Counter("alphasaga_sagas_total", "Sagas that reached a state", ["state"])
OUTAGES = Counter(
    "alphasaga_outages_total",
    "Outages a background loop rode out (a lost or refused connection), by loop",
    ["loop"],
)
