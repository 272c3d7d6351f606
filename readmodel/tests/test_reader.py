"""Readers never project: a status behind the projector is the saga folded in memory (the
table is not written), a list waits for the projector's position to pass the log's head
(and says clearly when it does not), and a saga id with no saga answers from its outbox."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import pytest

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_readmodel.projector import SagaProjector
from alphasaga_readmodel.reader import ProjectionBehind, SagaReader
from alphasaga_readmodel.store import ReadStore
from alphasaga_readmodel.summaries import SagaFilter
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.mapper import SagaMapper
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.eventstore import EventStore, outbox_stream
from alphasaga_shared.outbox_rows import outbox_events
from alphasaga_shared.wire import Outgoing, envelope_for
from tests.support.sessions import running_transactions_ended

MAPPER = SagaMapper()


async def started_saga(store: EventStore, *, steps_done: int = 0) -> uuid.UUID:
    """A saga's events as the orchestrator writes them: started, and ``steps_done`` steps
    commanded and succeeded."""
    saga_id = uuid.uuid4()
    saga = Saga(saga_id=saga_id, workflow="research", workflow_version=1, request={"dataset": "sp500"}, traceparent="")
    for n, step in enumerate(("reasoning", "codegen", "ml", "backtest")[:steps_done], start=1):
        saga.command_step(step, 1, f"m-{n}", "2026-01-01T00:00:00+00:00")
        saga.step_succeeded(step, 1, {step: n})
    await store.append(saga_stream(saga_id), MAPPER.to_new_events(saga.collect_events(), {}), expected_version=0)
    return saga_id


async def rows_in_table(store: EventStore) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM saga_summaries"))


async def test_a_status_behind_the_projector_is_folded_in_memory_and_writes_nothing(store: EventStore) -> None:
    reader = SagaReader(ReadStore(store))
    saga_id = await started_saga(store, steps_done=2)
    status = await reader.status(saga_id)
    assert status is not None and status.version == 5 and status.steps_completed == ["reasoning", "codegen"]
    assert status.state == "RUNNING" and status.dataset == "sp500"
    assert await rows_in_table(store) == 0, "a reader never writes the saga list"

    await running_transactions_ended(store.pool)  # the projector reads in commit order
    await SagaProjector(ReadStore(store)).catch_up()
    assert await reader.status(saga_id) == await ReadStore(store).summary(saga_id)


async def test_a_list_waits_for_the_projector_and_says_so_when_none_runs(store: EventStore) -> None:
    reader = SagaReader(ReadStore(store), timeout_s=0.5)
    assert await reader.sagas(SagaFilter()) == [], "an empty log needs no projector"
    saga_id = await started_saga(store)
    await running_transactions_ended(store.pool)  # the saga's rows are readable in commit order
    with pytest.raises(ProjectionBehind, match="is a projector running"):
        await reader.sagas(SagaFilter())

    projector = SagaProjector(ReadStore(store), poll_ms=20)
    running = asyncio.create_task(projector.run())
    try:
        listed = await SagaReader(ReadStore(store), timeout_s=30).sagas(SagaFilter())
        assert [s.saga_id for s in listed] == [saga_id]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_list_holds_a_saga_committed_while_an_older_transaction_is_open(store: EventStore) -> None:
    """A transaction left open elsewhere holds the projector back; a list waits for it
    rather than answer without the saga committed before the call."""
    projector = SagaProjector(ReadStore(store), poll_ms=20)
    running = asyncio.create_task(projector.run())
    older = await store.pool.acquire()
    transaction = older.transaction()
    await transaction.start()
    try:
        await older.fetchval("SELECT pg_current_xact_id()")  # holds the snapshot's xmin back
        saga_id = await started_saga(store)

        async def end_the_older_one() -> None:
            await asyncio.sleep(0.5)
            await transaction.rollback()

        ending = asyncio.create_task(end_the_older_one())
        listed = await SagaReader(ReadStore(store), timeout_s=30).sagas(SagaFilter())
        await ending
        assert [s.saga_id for s in listed] == [saga_id]
    finally:
        with contextlib.suppress(asyncpg.InterfaceError):  # ended already
            await transaction.rollback()
        await store.pool.release(older)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_saga_id_with_no_saga_answers_from_its_outbox(store: EventStore) -> None:
    reader = SagaReader(ReadStore(store))
    pending, refused, nothing = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for saga_id in (pending, refused):
        start = sg.StartResearch(saga_id=saga_id, workflow="research", request=ResearchRequest(dataset="nasdaq"))
        rows = outbox_events([Outgoing("cmd", envelope_for(start, correlation_id=str(saga_id)))])
        await store.append(outbox_stream(str(saga_id)), rows, expected_version=None)
    no = sg.RequestRejected(saga_id=refused, request_type="orchestrator.StartResearch", message_id="m", reason="no")
    rows = outbox_events([Outgoing("evt", envelope_for(no, correlation_id=str(refused)))])
    await store.append(outbox_stream(str(refused)), rows, expected_version=None)
    cancel = sg.RequestRejected(saga_id=nothing, request_type="orchestrator.CancelSaga", message_id="c", reason="no")
    rows = outbox_events([Outgoing("evt", envelope_for(cancel, correlation_id=str(nothing)))])
    await store.append(outbox_stream(str(nothing)), rows, expected_version=None)

    waiting = await reader.status(pending)
    assert waiting is not None and waiting.state == "PENDING" and not waiting.terminal
    assert waiting.dataset == "nasdaq" and waiting.submitted_at is not None and waiting.failure is None
    gone = await reader.status(refused)
    assert gone is not None and gone.state == "REJECTED" and gone.terminal and gone.failure == "no"
    assert gone.as_json()["submitted_at"] == gone.started_at.isoformat()
    assert await reader.status(nothing) is None, "a refused cancel of no saga is not a saga"
    assert await reader.status(uuid.uuid4()) is None
    assert await ReadStore(store).known(pending) and not await ReadStore(store).known(uuid.uuid4())
