"""Prometheus metrics shared by every service (served on ``/metrics``; docs/observability.md
says what each means).

Counters and histograms are updated where things happen. Gauges that describe state kept
elsewhere (a stream's lag, the timer backlog, the outbox backlog) are read on scrape by
the refreshers registered with ``on_scrape``, never per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from . import telemetry

log = logging.getLogger(__name__)

FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
SLOW = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)

# --- bus ---
MESSAGES = Counter(
    "alphasaga_messages_total",
    "Stream entries handled, by outcome: processed, duplicate, failed (will be retried), dead_lettered",
    ["stream", "group", "outcome"],
)
PUBLISHED = Counter("alphasaga_published_total", "Messages published to streams")
RECLAIMED = Counter(
    "alphasaga_reclaimed_total", "Idle pending entries claimed from other consumers", ["stream", "group"]
)
LOST = Counter(
    "alphasaga_lost_pending_total",
    "Pending entries found deleted (trimmed) before they were processed; should stay 0",
    ["stream"],
)
BUS_READER_FAILURES = Counter(
    "alphasaga_bus_reader_failures_total",
    "Reads of a stream that failed on something other than an outage (a bug), read again after a second",
    ["stream"],
)
GROUPS_RECREATED = Counter(
    "alphasaga_bus_groups_recreated_total",
    "Consumer groups found gone (Redis forgot them) and made again at 0, by stream and group",
    ["stream", "group"],
)
HANDLER_SECONDS = Histogram(
    "alphasaga_handler_seconds", "Time spent in a message handler", ["stream", "group"], buckets=FAST
)

# --- sagas (the orchestrator) ---
SAGAS = Counter(
    "alphasaga_sagas_total",
    "Sagas by what happened to them: started, completed, rolled_back, compensation_failed, cancelled",
    ["workflow", "version", "event"],
)
SAGA_SECONDS = Histogram(
    "alphasaga_saga_seconds", "From start to end, by outcome", ["workflow", "outcome"], buckets=SLOW
)
STEP_SECONDS = Histogram(
    "alphasaga_step_seconds",
    "One step attempt or compensation, from command to reply, by outcome",
    ["step", "kind", "outcome"],
    buckets=SLOW,
)
STEP_RETRIES = Counter("alphasaga_step_retries_total", "Step attempts after the first", ["step"])
STEP_TIMEOUTS = Counter("alphasaga_step_timeouts_total", "Step and compensation attempts that timed out", ["step"])
TIMER_BACKLOG = Gauge("alphasaga_timer_backlog", "Saga deadlines already due and not yet fired")

# --- storage ---
RELAYED = Counter("alphasaga_relayed_total", "Outbox messages published by the relay")
REPUBLISHED = Counter(
    "alphasaga_relay_republished_total",
    "Outbox rows of unfinished sagas published again because Redis forgot or was restarted (docs/runbooks.md)",
)
RELAY_LAG = Gauge("alphasaga_relay_lag_seconds", "Age of the newest outbox row the relay published")
ARCHIVE_LAG = Gauge(
    "alphasaga_archive_lag_seconds",
    "How long the finished saga longest due for the archive (the retention policy) has been due;"
    " 0 when none is. Not exported without a policy",
)
OUTBOX_BACKLOG = Gauge("alphasaga_outbox_backlog", "Outbox rows committed and not yet passed by the relay")
COMMIT_SECONDS = Histogram(
    "alphasaga_eventstore_commit_seconds", "One orchestrator commit (events, outbox, inbox, timers)", buckets=FAST
)
# Group commit: with many sagas in flight one commit carries a batch's decisions.
COMMIT_INPUTS = Histogram(
    "alphasaga_eventstore_commit_inputs",
    "Inputs (messages) decided on and stored by one orchestrator commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
CONFLICTS = Counter("alphasaga_conflicts_total", "Commits refused by a concurrent change and decided again")
OUTAGES = Counter(
    "alphasaga_outages_total",
    "Outages a background loop rode out (a lost or refused connection), by loop",
    ["loop"],
)

# --- the work ---
SANDBOX_RUNS = Counter(
    "alphasaga_sandbox_runs_total", "Generated strategies run in the sandbox, by outcome", ["outcome"]
)
ML_TRAINING_SECONDS = Histogram("alphasaga_ml_training_seconds", "Walk-forward training of one model", buckets=SLOW)
BACKTEST_SECONDS = Histogram("alphasaga_backtest_seconds", "One backtest with its metrics and chart", buckets=SLOW)

Refresher = Callable[[], Awaitable[None]]
_refreshers: list[Refresher] = []
REFRESH_TIMEOUT_S = 2.0


def on_scrape(refresh: Refresher) -> None:
    """Run ``refresh`` before each scrape (it sets gauges from Redis or PostgreSQL)."""
    _refreshers.append(refresh)


async def refresh_all() -> None:
    """Every refresher, at once; one that fails or is slow leaves its gauges as they were."""
    if not _refreshers:
        return
    results = await asyncio.gather(
        *(asyncio.wait_for(r(), REFRESH_TIMEOUT_S) for r in _refreshers), return_exceptions=True
    )
    for r, result in zip(_refreshers, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("metrics refresher %s failed: %r", getattr(r, "__qualname__", r), result)


def exemplar() -> dict[str, str] | None:
    """The current trace id, for a histogram's exemplar (OpenMetrics), when traced."""
    if not telemetry.tracing():
        return None
    ctx = trace.get_current_span().get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x")} if ctx.is_valid and ctx.trace_flags.sampled else None
