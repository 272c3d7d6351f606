"""Which pool a commit runs on: a decision on a few sagas goes to the commit pool (whose
sessions plan COMMIT_SQL once), a batch of more sagas to the store's main pool."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator import bootstrap
from alphasaga_orchestrator.tuning import COMMIT_POOL_SETTINGS, GENERIC_PLAN_MAX_SAGAS
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore
from alphasaga_shared.wire import Delivery, Envelope, envelope_for
from tests.support import replies


def start(saga_id: uuid.UUID) -> Envelope:
    return envelope_for(
        sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500")), correlation_id=str(saga_id)
    )


async def commit_pool_backends(store: EventStore, application_name: str) -> list[Any]:
    """What the commit pool's sessions last ran, and when, as PostgreSQL sees them."""
    async with store.pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT query, query_start FROM pg_stat_activity WHERE application_name LIKE $1 || ' pid=%' ORDER BY pid",
            application_name,
        )
    return [(r["query"], r["query_start"]) for r in rows]


async def test_one_saga_commits_on_the_commit_pool_and_a_large_batch_on_the_main_pool(
    settings: Settings, store: EventStore
) -> None:
    name = f"alphasaga-test-{uuid.uuid4().hex[:8]}"
    commit_pool = await store.pool_with(COMMIT_POOL_SETTINGS, application_name=name)
    orchestrator = bootstrap.orchestrator(store, settings, commit_pool=commit_pool)

    one = uuid.uuid4()
    await orchestrator.apply(one, start(one))
    after_one = await commit_pool_backends(store, name)
    assert any("WITH guard AS" in query for query, _ in after_one), after_one

    many = [uuid.uuid4() for _ in range(GENERIC_PLAN_MAX_SAGAS + 1)]
    stream = settings.streams.commands("orchestrator")
    await orchestrator.decide_and_commit_batch(
        [Delivery(stream=stream, entry_id=f"1-{i}", fields={}, envelope=start(s)) for i, s in enumerate(many)]
    )
    for saga_id in many:
        assert [e.type.rsplit(".", 1)[-1] for e in await store.read_stream(saga_stream(saga_id))][:1] == ["Started"]
    assert await commit_pool_backends(store, name) == after_one, "the large batch did not use the commit pool"


async def test_a_batch_holding_an_input_already_handled_commits_the_others_as_one_batch(
    settings: Settings, store: EventStore
) -> None:
    orchestrator = bootstrap.orchestrator(store, settings)
    stream = settings.streams.commands("orchestrator")
    handled_before = uuid.uuid4()
    duplicate = envelope_for(
        sg.StartResearch(saga_id=handled_before, request=ResearchRequest(dataset="sp500")),
        correlation_id=str(handled_before),
        message_id=f"start-{handled_before}",
    )
    await orchestrator.apply(handled_before, duplicate)
    started_with = len(await store.read_stream(saga_stream(handled_before)))
    fresh = [uuid.uuid4() for _ in range(3)]
    deliveries = [Delivery(stream=stream, entry_id="1-0", fields={}, envelope=duplicate)] + [
        Delivery(stream=stream, entry_id=f"2-{i}", fields={}, envelope=start(s)) for i, s in enumerate(fresh)
    ]

    done = await orchestrator.decide_and_commit_batch(deliveries)

    assert done == {d.entry_id for d in deliveries}, "the batch fell back to one by one"
    for saga_id in fresh:
        assert [e.type.rsplit(".", 1)[-1] for e in await store.read_stream(saga_stream(saga_id))][:1] == ["Started"]
    assert len(await store.read_stream(saga_stream(handled_before))) == started_with, "the duplicate was decided again"


async def test_a_batch_holding_a_saga_another_orchestrator_moved_on_is_decided_again_as_one_batch(
    settings: Settings, store: EventStore
) -> None:
    mine, other = bootstrap.orchestrator(store, settings), bootstrap.orchestrator(store, settings)
    moved, kept = uuid.uuid4(), uuid.uuid4()
    for saga_id in (moved, kept):
        await mine.apply(saga_id, start(saga_id))  # cached here, so a batch of these is not read again
    reply = replies.success("reasoning", moved, "reasoning", 1)
    await other.apply(moved, envelope_for(reply, correlation_id=str(moved)))  # moved on elsewhere
    stream = settings.streams.commands("orchestrator")
    deliveries = [
        Delivery(
            stream=stream,
            entry_id=f"1-{i}",
            fields={},
            envelope=envelope_for(sg.CancelSaga(saga_id=saga_id), correlation_id=str(saga_id)),
        )
        for i, saga_id in enumerate((moved, kept))
    ]

    done = await mine.decide_and_commit_batch(deliveries)

    assert done == {d.entry_id for d in deliveries}, "the batch fell back to one by one"
    types = [e.type.rsplit(".", 1)[-1] for e in await store.read_stream(saga_stream(moved))]
    # Decided on the saga as the other orchestrator left it: codegen commanded, then cancelled.
    assert types[:5] == ["Started", "StepCommanded", "StepSucceeded", "StepCommanded", "CompensationStarted"], types
