"""The saga-summary projector folds sagas forward from the rows it reads; after many
rounds its table must equal a rebuild that folds every saga from scratch."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator import bootstrap
from alphasaga_readmodel.projector import SagaProjector
from alphasaga_readmodel.store import ReadStore
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore
from alphasaga_shared.wire import envelope_for
from tests.support import replies
from tests.support.helpers import eventually
from tests.support.sessions import running_transactions_ended


async def table(store: EventStore) -> list[dict[str, Any]]:
    async with store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM saga_summaries ORDER BY saga_id")
    return [dict(r) for r in rows]


async def test_incremental_projection_equals_a_full_rebuild(settings: Settings, store: EventStore) -> None:
    orchestrator = bootstrap.orchestrator(store, settings)
    projector = SagaProjector(ReadStore(store), batch=7)  # small batches: sagas straddle them
    sagas = [uuid.uuid4() for _ in range(40)]
    for saga_id in sagas:
        start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
        await orchestrator.apply(saga_id, envelope_for(start, correlation_id=str(saga_id)))
    await projector.catch_up()
    assert projector.cached == 40  # in flight: kept, to be folded forward
    for i, step in enumerate(("reasoning", "codegen", "ml", "backtest")):
        for n, saga_id in enumerate(sagas):
            if step == "ml" and n % 4 == 0:
                reply: Any = replies.failure("ml", saga_id, "ml", 1, retryable=False)
            else:
                reply = replies.success(step, saga_id, step, 1)
            await orchestrator.apply(saga_id, envelope_for(reply, correlation_id=str(saga_id)))
        if i % 2 == 0:
            await projector.catch_up()
    for saga_id in sagas[::4]:  # compensations of the failed ones, newest first
        for step in ("codegen", "reasoning"):
            done = replies.compensated(step, saga_id, step, 1)
            await orchestrator.apply(saga_id, envelope_for(done, correlation_id=str(saga_id)))
    await running_transactions_ended(store.pool)
    await projector.catch_up()
    incremental = await table(store)
    assert len(incremental) == 40
    assert {r["state"] for r in incremental} == {"COMPLETED", "ROLLED_BACK"}
    assert projector.cached == 0, "a finished saga is not kept"

    assert await SagaProjector(ReadStore(store)).rebuild() == 40
    assert await table(store) == incremental


async def test_one_background_projector_works_at_a_time_and_another_takes_over_when_it_stops(
    settings: Settings, store: EventStore
) -> None:
    orchestrator = bootstrap.orchestrator(store, settings)
    first, second = SagaProjector(ReadStore(store), poll_ms=20), SagaProjector(ReadStore(store), poll_ms=20)

    async def start_saga() -> uuid.UUID:
        saga_id = uuid.uuid4()
        start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
        await orchestrator.apply(saga_id, envelope_for(start, correlation_id=str(saga_id)))
        return saga_id

    async def summarised(saga_id: uuid.UUID) -> bool:
        return any(r["saga_id"] == saga_id for r in await table(store))

    first_runs = asyncio.create_task(first.run())

    async def first_active() -> bool:
        return first.active

    await eventually(first_active)
    second_runs = asyncio.create_task(second.run())
    try:
        one = await start_saga()
        await eventually(lambda: summarised(one))
        assert not second.active and not second._cache, "the second projector folded sagas too"

        first_runs.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first_runs
        two = await start_saga()
        await eventually(lambda: summarised(two))
        assert second.active and two in second._cache
    finally:
        second_runs.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second_runs
