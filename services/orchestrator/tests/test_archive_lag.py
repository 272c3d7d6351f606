"""The orchestrator exports the archive's lag on scrape when a retention policy is set:
how long the finished saga longest due for the archive has been due (alert ArchiveLagging)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from alphasaga_orchestrator.bootstrap import OrchestratorService
from alphasaga_orchestrator.sagastore import SagaStore
from alphasaga_shared import metrics
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore


async def summary(store: EventStore, state: str, ended: dt.datetime, archived: bool = False) -> None:
    await store.pool.execute(
        "INSERT INTO saga_summaries (saga_id, state, workflow, workflow_version, version, started_at, updated_at,"
        " saga_state, archived_at) VALUES ($1, $2, 'research', 1, 5, $3, $3, '{}', $4)",
        uuid.uuid4(),
        state,
        ended,
        ended if archived else None,
    )


async def test_the_lag_is_how_long_the_oldest_due_finished_saga_waited(store: EventStore, settings: Settings) -> None:
    now = dt.datetime.now(dt.UTC)
    service = OrchestratorService(
        settings.model_copy(update={"retention_hot_days": 30}),
        SagaStore(store),
        *([None] * 4),  # type: ignore[arg-type]
    )
    lag: Any = metrics.ARCHIVE_LAG
    await service._archive_lag()
    assert lag._value.get() == 0  # nothing at all
    await summary(store, "RUNNING", now - dt.timedelta(days=60))  # not finished: never due
    await summary(store, "COMPLETED", now - dt.timedelta(days=50), archived=True)  # archived already
    await summary(store, "ROLLED_BACK", now - dt.timedelta(days=10))  # finished, still within its 30 days
    await service._archive_lag()
    assert lag._value.get() == 0
    await summary(store, "COMPLETED", now - dt.timedelta(days=33))
    await summary(store, "COMPENSATION_FAILED", now - dt.timedelta(days=32))
    await service._archive_lag()
    assert 3 * 86400 - 60 < lag._value.get() < 3 * 86400 + 60
