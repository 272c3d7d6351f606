"""Bad input fails at once with its real reason: an unknown workflow and a cancel of a
saga that does not exist are refused with a lifecycle event, a request that breaks its
contract is refused the same way, and a step command that keeps failing is dead-lettered
and fails its step at once, naming the dead letter. Each in seconds, where the step
timeouts here are minutes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from alphasaga_client import AlphaSaga, InvalidRequest
from alphasaga_contracts import Service
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import derived_message_id
from tests.support.harness import Harness, workflow
from tests.support.helpers import Proc

# Far longer than any wait below: an outcome that comes is an outcome that did not time out.
SLOW_STEPS = workflow(timeout_s=600.0)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AlphaSaga]:
    async with AlphaSaga(settings) as c:
        yield c


async def last_event(client: AlphaSaga, saga_id: uuid.UUID, after: str) -> sg.SagaEvent:
    events = [u.event async for u in client.follow(saga_id, after=after, timeout_s=30)]
    return events[-1]


async def send_raw(h: Harness, message_id: str, saga_id: uuid.UUID, message_type: str, body: str) -> None:
    """An entry on the orchestrator's command stream, as any Redis client could add it."""
    await h.redis.xadd(
        h.settings.streams.commands(Service.ORCHESTRATOR),
        {"message_id": message_id, "correlation_id": str(saga_id), "type": message_type, "body": body},
    )


async def test_an_unknown_workflow_and_a_cancel_of_no_saga_are_refused_at_once(h: Harness, client: AlphaSaga) -> None:
    await h.ready(h.orchestrator(h.workflows_file(SLOW_STEPS)))
    submitted = await client.submit(ResearchRequest(dataset="sp500"), workflow="no-such-workflow")
    refused = await last_event(client, submitted.saga_id, submitted.follow_from)
    assert isinstance(refused, sg.RequestRejected), refused
    assert "unknown workflow 'no-such-workflow' (known: research)" in refused.reason
    assert refused.request_type == "orchestrator.StartResearch" and refused.message_id == submitted.message_id
    assert await h.events(submitted.saga_id) == [], "no saga was started"

    ghost = uuid.uuid4()
    after = await client.lifecycle_cursor()
    await send_raw(h, str(uuid.uuid4()), ghost, "orchestrator.CancelSaga", f'{{"saga_id": "{ghost}"}}')
    refused = await last_event(client, ghost, after)
    assert isinstance(refused, sg.RequestRejected) and refused.reason == f"no saga {ghost} to cancel"


async def test_a_request_that_breaks_its_contract_is_refused_on_the_lifecycle_stream(
    h: Harness, client: AlphaSaga
) -> None:
    await h.ready(h.orchestrator(h.workflows_file(SLOW_STEPS)))
    saga_id = uuid.uuid4()
    after = await client.lifecycle_cursor()
    await send_raw(h, "m-1", saga_id, "orchestrator.StartResearch", '{"request": {"dataset": 42}}')
    refused = await last_event(client, saga_id, after)
    assert isinstance(refused, sg.RequestRejected), refused
    assert "violates its contract" in refused.reason and ":cmd:orchestrator:dlq" in refused.reason
    assert refused.message_id == "m-1"


async def test_a_step_that_keeps_failing_is_dead_lettered_and_fails_at_once_naming_it(
    h: Harness, client: AlphaSaga
) -> None:
    crashing = Proc.module(
        "tests.support.crashing_worker",
        {**h.env, "ALPHASAGA_DELIVERY_CAP": "2", "CRASH_NOISE": "1000000"},
        h.tmp / "crashing.log",
    )
    h.procs.append(crashing)
    await h.ready(h.orchestrator(h.workflows_file(SLOW_STEPS)), h.sim(only=["reasoning", "ml", "backtest"]), crashing)
    submitted = await client.submit(ResearchRequest(dataset="sp500"))
    ended = await last_event(client, submitted.saga_id, submitted.follow_from)
    assert isinstance(ended, sg.SagaRolledBack), ended
    letters = await client.dead_letters("cmd:codegen")
    assert len(letters) == 1
    assert ended.reason.startswith(f"codegen failed (dead_lettered): dead letter {letters[0].entry_id} in "), (
        ended.reason
    )
    assert "ZeroDivisionError: simulated bug" in ended.reason
    assert letters[0].fields["message_id"] == derived_message_id(str(submitted.saga_id), "codegen", "attempt", "1")
    # The million characters of the error are cut, saying so, in the dead letter and the saga.
    assert "(dlq_error of 1,000,0" in letters[0].error and len(letters[0].error) < 3_000
    assert "characters cut to 2,000)" in ended.reason and len(ended.reason) < 5_000


async def test_an_oversized_request_is_dead_lettered_with_its_size_not_its_content(
    h: Harness, client: AlphaSaga
) -> None:
    await h.ready(h.orchestrator(h.workflows_file(SLOW_STEPS)))
    saga_id = uuid.uuid4()
    after = await client.lifecycle_cursor()
    huge = "x" * 5_000_000
    body = f'{{"request": {{"dataset": "sp500", "data_path": "{huge}"}}}}'
    await send_raw(h, "m-huge", saga_id, "orchestrator.StartResearch", body)
    refused = await last_event(client, saga_id, after)
    assert isinstance(refused, sg.RequestRejected), refused
    assert "an entry of 5,000,1" in refused.reason and "over the 262,144-byte limit" in refused.reason
    (letter,) = await client.dead_letters("cmd:orchestrator")
    assert "body" not in letter.fields and letter.fields["message_id"] == "m-huge"
    assert sum(len(k) + len(v) for k, v in letter.fields.items()) < 2_000, "the size, not the content"
    assert await h.events(saga_id) == []
    assert await h.redis.xlen(h.settings.streams.commands(Service.REASONING)) == 0
    # The contract bounds every field now (data_path: 1,024 characters), so only a request
    # made past its validation can be this large: the client still refuses to send it.
    with pytest.raises(InvalidRequest, match="over the 262,144-byte limit: not sent"):
        await client.submit(ResearchRequest.model_construct(data_path=huge))
