"""The orchestrator's handlers (decide, then commit one unit of work) on the in-memory
storage port: the inbox, conflicts with another orchestrator, batches, the timers. The
PostgreSQL adapter keeps its own tests (``test_sagastore.py`` and the process tests)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from alphasaga_contracts import Message, SagaState, Streams
from alphasaga_contracts.saga import derived_saga_id
from alphasaga_orchestrator.decide import TimerFired
from alphasaga_orchestrator.handling import Orchestrator, refused_saga
from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_orchestrator.storage import Conflict
from alphasaga_orchestrator.timers import Timers
from alphasaga_saga.aggregate import Saga, TimerKind
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.eventstore import outbox_stream
from alphasaga_shared.wire import Delivery, Envelope, envelope_for
from tests.support.memory_sagastore import MemorySagaStore
from tests.support.saga_inputs import SAGA, failure, start, success

STEPS = ("reasoning", "codegen", "ml", "backtest")


def orchestrator(store: MemorySagaStore, *, cache_size: int = 100) -> Orchestrator:
    return Orchestrator(store, SagaRepository(store, cache_size=cache_size), Streams("t"))


def delivery(message: Message, message_id: str, saga_id: uuid.UUID = SAGA) -> Delivery:
    env = envelope_for(message, correlation_id=str(saga_id), message_id=message_id)
    return Delivery(stream="t:cmd:orchestrator", entry_id=f"{message_id}-0", fields={}, envelope=env)


async def handle(o: Orchestrator, message: Message, message_id: str) -> None:
    d = delivery(message, message_id)
    assert isinstance(d.envelope, Envelope)
    await o.handle(d.envelope, d)


async def state(store: MemorySagaStore, saga_id: uuid.UUID = SAGA) -> Saga:
    saga = await SagaRepository(store).load(saga_id)
    assert saga is not None
    return saga


async def test_a_saga_runs_its_four_steps_and_completes_one_commit_per_input() -> None:
    store = MemorySagaStore()
    o = orchestrator(store)
    await handle(o, start(), "start")
    for step in STEPS:
        await handle(o, success(step), f"done-{step}")
    assert (await state(store)).state == SagaState.COMPLETED
    sent = store.types(outbox_stream(str(SAGA)))
    assert sent[:2] == ["sagas.SagaStarted", "reasoning.FormHypothesis"]
    assert sent[-1] == "sagas.SagaCompleted"
    assert store.commits == 5 and store.inbox == {"start", *(f"done-{s}" for s in STEPS)}


async def test_a_message_delivered_twice_is_decided_once() -> None:
    store = MemorySagaStore()
    o = orchestrator(store)
    await handle(o, start(), "start")
    await handle(o, success("reasoning"), "r1")
    events = len(store.streams[saga_stream(SAGA)])
    await handle(o, success("reasoning"), "r1")  # the same message again
    await handle(orchestrator(store), success("reasoning"), "r1")  # and to a process without it cached
    assert len(store.streams[saga_stream(SAGA)]) == events
    assert store.types(outbox_stream(str(SAGA))).count("codegen.GenerateStrategy") == 1


async def test_a_saga_another_orchestrator_moved_on_is_decided_again_on_the_stored_state() -> None:
    store = MemorySagaStore()
    mine, other = orchestrator(store), orchestrator(store)
    await handle(mine, start(), "start")  # cached by mine at version 3
    await handle(other, success("reasoning"), "r1")  # moves the saga on behind mine's back
    await handle(mine, success("codegen"), "c1")  # mine's cached saga is stale: conflict, then fresh
    saga = await state(store)
    assert saga.completed == ["reasoning", "codegen"]
    assert store.types(outbox_stream(str(SAGA))).count("ml.TrainModel") == 1


async def test_a_batch_of_many_sagas_commits_in_one_unit_of_work() -> None:
    store = MemorySagaStore()
    o = orchestrator(store)
    sagas = [uuid.uuid4() for _ in range(5)]
    batch = [delivery(start().model_copy(update={"saga_id": s}), f"start-{s}", s) for s in sagas]
    handled = await o.decide_and_commit_batch(batch)
    assert handled == {d.entry_id for d in batch}
    assert store.commits == 1 and sorted(store.sagas()) == sorted(sagas)


async def test_a_batch_that_meets_a_conflict_twice_is_left_to_the_one_by_one_path() -> None:
    store = MemorySagaStore(fail_next=[Conflict("race"), Conflict("race again")])
    o = orchestrator(store)
    batch = [delivery(start(), "a"), delivery(success("reasoning"), "b")]
    assert await o.decide_and_commit_batch(batch) == set()
    assert store.commits == 0  # nothing written: the bus hands each to ``handle``


async def test_a_step_timeout_fires_once_and_a_retryable_failure_is_retried_after_its_backoff() -> None:
    store = MemorySagaStore()
    o = orchestrator(store)
    await handle(o, start(), "start")
    timers = Timers(store, o.apply)
    assert await timers.fire_due() == 0  # not due yet
    store.now = store.timers[SAGA].due_at + dt.timedelta(seconds=1)
    assert await timers.fire_due() == 1
    saga = await state(store)
    assert saga.deadline is not None and saga.deadline["kind"] == TimerKind.RETRY
    # Another orchestrator fires the same deadline late: the inbox makes it a no-op.
    await o.apply(SAGA, TimerFired(SAGA, TimerKind.STEP_TIMEOUT, "reasoning", 1))
    assert (await state(store)).version == saga.version
    store.now = store.timers[SAGA].due_at
    assert await timers.fire_due() == 1  # the backoff is over: attempt 2
    assert store.types(outbox_stream(str(SAGA))).count("reasoning.FormHypothesis") == 2


async def test_a_failed_step_rolls_the_saga_back_through_the_handler() -> None:
    store = MemorySagaStore()
    o = orchestrator(store)
    await handle(o, start(), "start")
    await handle(o, failure("reasoning"), "f1")
    saga = await state(store)
    assert saga.state == SagaState.ROLLED_BACK
    assert store.types(outbox_stream(str(SAGA)))[-1] == "sagas.SagaRolledBack"
    assert SAGA not in store.timers


async def test_a_timer_for_an_unknown_saga_changes_nothing_but_is_recorded_as_handled() -> None:
    store = MemorySagaStore()
    o = orchestrator(store)
    ghost = uuid.uuid4()
    timer = TimerFired(ghost, TimerKind.STEP_TIMEOUT, "reasoning", 1)
    await o.apply(ghost, timer)
    assert store.streams == {} and timer.message_id in store.inbox


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"correlation_id": str(SAGA), "body": "{}"}, SAGA),
        ({"body": json.dumps({"saga_id": str(SAGA), "trials": 0})}, SAGA),  # no correlation id
        ({"type": "orchestrator.StartResearch", "message_id": "m-1", "body": "not json"}, derived_saga_id("m-1")),
        ({"type": "orchestrator.CancelSaga", "message_id": "m-1", "body": "[1, 2]"}, None),
        ({"correlation_id": "not a uuid", "body": json.dumps({"saga_id": 7})}, None),
    ],
)
def test_a_dead_lettered_request_is_answered_for_the_saga_it_names_wherever_it_names_it(
    fields: dict[str, str], expected: uuid.UUID | None
) -> None:
    assert refused_saga(fields) == expected


async def test_a_failing_deadline_fired_elsewhere_is_forgotten_so_the_timers_hold_no_history() -> None:
    store = MemorySagaStore()
    o = orchestrator(store)
    await handle(o, start(), "start")
    store.now = store.timers[SAGA].due_at + dt.timedelta(seconds=1)

    async def failing(saga_id: uuid.UUID, timer: object) -> None:
        raise ValueError("a bug in deciding")

    timers = Timers(store, failing)
    assert await timers.fire_due() == 0
    assert len(timers._failing) == 1  # held back, to be tried again later
    del store.timers[SAGA]  # another orchestrator fired it
    assert await timers.fire_due() == 0
    assert timers._failing == {}
