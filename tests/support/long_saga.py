"""A long saga, shaped like a campaign that runs for weeks: trial after trial, each commanded,
failing once on a transient error, retried and succeeding. Its events are the aggregate's
own (the orchestrator's methods, the saga's mapper), written in commits the way the
orchestrator writes them, a snapshot every ``snapshot_every`` events. For the snapshot test
and ``python -m bench snapshots``."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_orchestrator.sagastore import SagaStore
from alphasaga_orchestrator.storage import Changes
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.streams import saga_stream

EVENTS_PER_TRIAL = 5
DUE = (dt.datetime(2026, 12, 6, tzinfo=dt.UTC) + dt.timedelta(minutes=10)).isoformat()


def trials(saga: Saga) -> Iterator[None]:
    """Record one trial's events on ``saga`` per step of the iteration, for ever."""
    n = len(saga.completed)
    while True:
        n += 1
        step = f"trial-{n:06d}"
        saga.command_step(step, 1, f"{saga.id}:{step}:1", DUE)
        saga.step_failed(step, 1, "transient", "the data vendor timed out")
        saga.schedule_retry(step, 2, DUE)
        saga.command_step(step, 2, f"{saga.id}:{step}:2", DUE)
        saga.step_succeeded(step, 2, {"sharpe": round(0.1 + (n % 17) / 10, 2), "trades": n % 50})
        yield


def new_saga() -> Saga:
    return Saga(
        saga_id=uuid.uuid4(),
        workflow="campaign",
        workflow_version=1,
        request=ResearchRequest(dataset="sp500").model_dump(mode="json"),
        traceparent="",
    )


async def write_long_saga(
    store: SagaStore, repo: SagaRepository, events: int, *, per_commit: int = 1000, saga: Saga | None = None
) -> Saga:
    """A saga (``saga``, already written, or a new one) taken to at least ``events`` events,
    committed ``per_commit`` at a time, each commit with the snapshot the orchestrator would
    take (``repo.due_for_snapshot``); returns it as folded."""
    saga = saga or new_saga()
    more = trials(saga)
    written = saga.version if saga.version and not saga.pending_events else 0
    while written < events:
        while len(saga.pending_events) < per_commit and written + len(saga.pending_events) < events:
            next(more)
        rows = repo.to_new_events(saga.collect_events(), {})
        stream = saga_stream(saga.id)
        changes = Changes(events=[(stream, written, i, row) for i, row in enumerate(rows, start=1)])
        changes.expected[stream] = written
        if repo.due_for_snapshot(written, saga.version):
            changes.snapshots.append(repo.snapshot_of(saga))
        await store.commit(changes)
        written = saga.version
    return saga
