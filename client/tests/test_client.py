"""The client API against a real orchestrator process and simulated workers: what every
front end relies on, called directly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from alphasaga_client import (
    AlphaSaga,
    Ambiguous,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    SagaFilter,
)
from alphasaga_contracts import SagaState
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.config import Settings
from tests.support.harness import Harness, workflow


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AlphaSaga]:
    async with AlphaSaga(settings) as c:
        yield c


async def test_submit_follow_status_replay_and_check_one_saga(h: Harness, client: AlphaSaga) -> None:
    await h.ready(h.orchestrator(h.workflows_file(workflow())), h.sim())
    submitted = await client.submit(ResearchRequest(dataset="sp500"))
    lifecycle = [u async for u in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=60)]
    assert [type(u.event) for u in lifecycle] == [
        sg.SagaStarted,
        *[sg.SagaStepCompleted] * 4,
        sg.SagaCompleted,
    ]
    # Resuming after an entry already seen gives the rest, and nothing twice.
    rest = [u async for u in client.follow(submitted.saga_id, after=lifecycle[2].entry_id, timeout_s=10)]
    assert [u.entry_id for u in rest] == [u.entry_id for u in lifecycle[3:]]

    status = await client.status(str(submitted.saga_id)[:8])
    assert status.saga_id == submitted.saga_id and status.state == SagaState.COMPLETED
    assert status.steps_completed == ["reasoning", "codegen", "ml", "backtest"]
    assert status.dataset == "sp500"
    listed = await client.sagas(SagaFilter(state="COMPLETED", dataset="sp500"))
    assert [s.saga_id for s in listed] == [submitted.saga_id]
    assert await client.sagas(SagaFilter(dataset="nasdaq")) == []

    replay = await client.replay(submitted.saga_id, to=3)
    assert replay.total_events == 10 and [f.number for f in replay.frames] == [1, 2, 3]
    assert replay.frames[-1].state["completed"] == ["reasoning"]
    assert [c.path for c in replay.frames[0].changes][:1] == ["workflow"]
    check = await client.check(submitted.saga_id)
    assert check.violations == [] and check.events == 10

    frames = [f async for f in client.watch(submitted.saga_id, timeout_s=10)]
    assert frames[-1].state["state"] == "COMPLETED" and len(frames) == 10

    with pytest.raises(InvalidTransition, match="already ended COMPLETED"):
        await client.cancel(submitted.saga_id)


async def test_a_submit_with_the_same_idempotency_key_names_the_same_saga(h: Harness, client: AlphaSaga) -> None:
    await h.ready(h.orchestrator(h.workflows_file(workflow())), h.sim())
    key = f"retry-{uuid.uuid4()}"
    first = await client.submit(ResearchRequest(dataset="sp500"), message_id=key)
    again = await client.submit(ResearchRequest(dataset="sp500"), message_id=key)
    assert first.saga_id == again.saga_id == sg.derived_saga_id(key)
    assert (await h.wait_terminal([first.saga_id]))[first.saga_id] == "COMPLETED"
    assert await h.kinds(first.saga_id) == ["Started"] + ["StepCommanded", "StepSucceeded"] * 4 + ["Completed"]


async def test_names_that_find_no_saga_or_several_fail_with_their_reason(h: Harness, client: AlphaSaga) -> None:
    with pytest.raises(InvalidRequest, match="is not a saga id"):
        await client.resolve("zz")
    with pytest.raises(NotFound, match="no saga"):
        await client.status(uuid.uuid4())
    with pytest.raises(InvalidRequest, match="not a SHA-256"):
        await client.artifact("../../etc/passwd")
    await h.ready(h.orchestrator(h.workflows_file(workflow())), h.sim())
    one, two = uuid.UUID(f"abcd0{uuid.uuid4().hex[5:]}"), uuid.UUID(f"abcd1{uuid.uuid4().hex[5:]}")
    for saga_id in (one, two):
        await client.submit(ResearchRequest(dataset="sp500"), saga_id=saga_id)
    await h.wait_terminal([one, two])
    with pytest.raises(Ambiguous, match="ambiguous"):
        await client.resolve("abcd")
    assert await client.resolve("ABCD0") == one


def test_replay_shows_event_data_without_the_event_stores_encodings() -> None:
    from alphasaga_client.timetravel import readable

    saga_id = uuid.uuid4()
    stored = {"saga_id": {"_type_": "uuid_hex", "_data_": saga_id.hex}, "step": "ml", "attempt": 2}
    assert readable(stored) == {"saga_id": saga_id, "step": "ml", "attempt": 2}


async def test_a_request_sent_straight_to_redis_and_never_read_is_unknown_and_says_why(client: AlphaSaga) -> None:
    """No orchestrator reads it (as if Redis had lost it first): nothing in PostgreSQL."""
    submitted = await client.submit(ResearchRequest(dataset="sp500"))
    with pytest.raises(TimeoutError, match="unknown after 1s: nothing recorded its start in PostgreSQL"):
        async for _ in client.watch(submitted.saga_id, timeout_s=1.0):
            raise AssertionError("no saga to watch")
    with pytest.raises(NotFound, match="sent straight to Redis"):
        await client.status(submitted.saga_id)


async def test_a_recorded_start_is_pending_without_redis_knowing_it(client: AlphaSaga) -> None:
    async def no_owner(_conn: object, _saga_id: uuid.UUID) -> bool:
        return True

    submitted = await client.submit_recorded(ResearchRequest(dataset="sp500"), no_owner)
    assert (await client.status(submitted.saga_id)).state == "PENDING"
