"""The read model's store against a real PostgreSQL: the saga list's filters are bound
parameters, a prefix is matched as hex only, a status reads the row and the number of the
saga's events in one round trip."""

from __future__ import annotations

import datetime as dt
import uuid

from alphasaga_readmodel.store import ReadStore
from alphasaga_readmodel.summaries import SagaFilter, SagaSummary
from alphasaga_saga.streams import saga_id_of_stream, saga_stream
from alphasaga_shared.eventstore import EventStore, JsonText, NewEvent
from conftest import Servers


def summary(state: str, dataset: str, accepted: bool | None, sharpe: float | None, started: dt.datetime) -> SagaSummary:
    return SagaSummary(
        saga_id=uuid.uuid4(),
        state=state,
        workflow="research",
        workflow_version=1,
        current_step=None,
        attempt=0,
        steps_completed=[],
        failure=None,
        verdict=None if accepted is None else {"accepted": accepted, "reasons": []},
        metrics=None if sharpe is None else {"sharpe": sharpe},
        version=1,
        started_at=started,
        updated_at=started,
        saga_state=JsonText("{}"),
        dataset=dataset,
    )


async def test_the_saga_list_filters_and_treats_every_value_as_data(store: EventStore) -> None:
    sagas = ReadStore(store)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [
        summary("COMPLETED", "sp500", True, 0.8, t0),
        summary("COMPLETED", "sp500", False, 0.1, t0 + dt.timedelta(hours=1)),
        summary("ROLLED_BACK", "nasdaq", None, None, t0 + dt.timedelta(hours=2)),
        summary("RUNNING", "sp500", None, None, t0 + dt.timedelta(hours=3)),
    ]
    async with store.transaction() as conn:
        await sagas.upsert_summaries(conn, rows)

    def ids(found: list[SagaSummary]) -> list[uuid.UUID]:
        return [s.saga_id for s in found]

    assert ids(await sagas.summaries()) == [r.saga_id for r in reversed(rows)], "newest first"
    assert ids(await sagas.summaries(SagaFilter(state="COMPLETED"))) == [rows[1].saga_id, rows[0].saga_id]
    assert ids(await sagas.summaries(SagaFilter(dataset="nasdaq"))) == [rows[2].saga_id]
    assert ids(await sagas.summaries(SagaFilter(accepted=True))) == [rows[0].saga_id]
    assert ids(await sagas.summaries(SagaFilter(min_sharpe=0.5))) == [rows[0].saga_id]
    assert ids(await sagas.summaries(SagaFilter(max_sharpe=0.5))) == [rows[1].saga_id]
    window = SagaFilter(started_after=t0 + dt.timedelta(minutes=30), started_before=t0 + dt.timedelta(hours=3))
    assert ids(await sagas.summaries(window)) == [rows[2].saga_id, rows[1].saga_id]
    assert ids(await sagas.summaries(SagaFilter(limit=1))) == [rows[3].saga_id]
    # Keyset pages, with a filter, either way: a page starts after the last row shown.
    after = (rows[1].started_at, rows[1].saga_id)
    assert ids(await sagas.summaries(SagaFilter(dataset="sp500", after=after))) == [rows[0].saga_id]
    newer = SagaFilter(dataset="sp500", after=after, oldest_first=True)
    assert ids(await sagas.summaries(newer)) == [rows[3].saga_id]
    hostile = "sp500' OR '1'='1"
    assert await sagas.summaries(SagaFilter(dataset=hostile, state=hostile, workflow=hostile)) == []
    assert await sagas.count_summaries() == 4


async def test_a_prefix_is_matched_as_hex_only(store: EventStore) -> None:
    sagas = ReadStore(store)
    saga_id = uuid.UUID("3f1c2a9e-5b7d-4e0a-9c1b-2d3e4f5a6b7c")
    await store.append(saga_stream(saga_id), [NewEvent("E", {"n": 1})], expected_version=0)
    assert await sagas.sagas_with_prefix("3f1c") == [saga_id]
    assert await sagas.sagas_with_prefix("3f1%") == [], "a LIKE wildcard is not a prefix"
    assert await sagas.sagas_with_prefix("____") == []
    assert saga_id_of_stream(saga_stream(saga_id)) == saga_id
    assert saga_id_of_stream("outbox:3f1c2a9e-5b7d-4e0a-9c1b-2d3e4f5a6b7c") is None


async def test_the_saga_list_is_planned_for_its_own_filter_values_every_time(servers: Servers, schema: str) -> None:
    # A history where every saga is COMPLETED: a generic plan, whose estimate for
    # `state = $1` is then "every row", walks the whole list by start time to find a state
    # no saga is in (7.3 s at a million sagas, forced; docs/decisions/0017). PostgreSQL
    # would choose one for a prepared statement after five runs if it cost no more than
    # the custom plans; the page size, a bound parameter too, keeps its estimate above them.
    store = await EventStore.connect(servers.database_url, schema, max_size=1)
    try:
        async with store.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO saga_summaries (saga_id, state, workflow, workflow_version, version, started_at,"
                " updated_at, saga_state, dataset) SELECT gen_random_uuid(), 'COMPLETED', 'research', 1, 10,"
                " now() - make_interval(secs => g), now(), '{}', 'sp500' FROM generate_series(1, 20000) AS g"
            )
            await conn.execute("ANALYZE saga_summaries")
        sagas = ReadStore(store)
        for where in (
            SagaFilter(state="COMPLETED", limit=50),
            SagaFilter(state="COMPLETED", dataset="sp500", limit=50),
        ):
            for _ in range(10):
                assert len(await sagas.summaries(where)) == where.limit
        assert await sagas.summaries(SagaFilter(state="ROLLED_BACK", limit=50)) == []
        async with store.pool.acquire() as conn:
            plans = await conn.fetch(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE 'SELECT % FROM saga_summaries WHERE state = $1::text%'"
                " AND statement NOT LIKE '%pg_prepared_statements%'"
            )
        assert len(plans) == 2, "one cached statement for each set of filters"
        assert sorted((p["generic_plans"], p["custom_plans"]) for p in plans) == [(0, 10), (0, 11)], (
            "the saga list ran on a generic plan"
        )
    finally:
        await store.close()
