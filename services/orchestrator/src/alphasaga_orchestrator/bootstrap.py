"""The orchestrator's parts wired together: the one place that knows which part takes
which (the service's ``__main__`` and the tests both build it here)."""

from __future__ import annotations

import asyncpg

from alphasaga_saga.workflow import DEFAULT_WORKFLOWS, WorkflowRegistry
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore
from alphasaga_shared.outbox import Relay

from . import tuning
from .handling import Orchestrator
from .repository import SagaRepository
from .sagastore import SagaStore


def orchestrator(
    events: EventStore,
    settings: Settings,
    *,
    workflows: WorkflowRegistry = DEFAULT_WORKFLOWS,
    relay: Relay | None = None,
    commit_pool: asyncpg.Pool | None = None,
) -> Orchestrator:
    """An orchestrator over ``events``; ``commit_pool`` takes the commits of a few sagas
    (``tuning.COMMIT_POOL_SETTINGS``)."""
    store = SagaStore(events, commit_pool=commit_pool, small_commit_max=tuning.GENERIC_PLAN_MAX_SAGAS)
    repo = SagaRepository(
        store,
        snapshot_every=settings.snapshot_every,
        cache_size=settings.saga_cache_size,
        shared_window_s=tuning.SHARED_WINDOW_S,
    )
    return Orchestrator(store, repo, settings.streams, workflows, relay, max_error_chars=settings.max_error_chars)
