"""The worker runtime: a service hosts step kinds, each a ``run`` and an ``undo``
registered on its worker; commands go to their kind's run, compensations to the undo of
the kind they name, replies are the generic messages naming the kind."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from alphasaga_contracts import Service, Streams, envelope
from alphasaga_contracts import steps as st
from alphasaga_contracts.envelope import BODY, MESSAGE_ID, TYPE
from alphasaga_contracts.steps import StepKind, StepKinds
from alphasaga_shared.wire import Delivery, decode, envelope_for
from alphasaga_shared.worker import StepError, Worker, WorkerSettings, handles, serving

SAGA = uuid.UUID("00000000-0000-4000-8000-000000000001")


class Kinds:
    """Two kinds of the reasoning service: ``reasoning`` on the service's stream, ``think``
    on one of its own; ``ran`` and ``undone`` record which function each message reached."""

    def __init__(self, think: StepKind[Any, Any]) -> None:
        self.registry = StepKinds()
        self.registry.add(st.REASONING)
        self.think = self.registry.add(think)
        self.ran: list[str] = []
        self.undone: list[str] = []

    def handlers(self, *names: str) -> list[Any]:
        async def form(cmd: st.FormHypothesis) -> st.HypothesisFormed:
            self.ran.append("reasoning")
            if cmd.step == "refused":
                raise StepError("invalid_input", "no data")
            return st.HypothesisFormed.model_construct(saga_id=cmd.saga_id, step=cmd.step, attempt=cmd.attempt)

        async def think(cmd: Any) -> Any:
            self.ran.append("think")
            return self.think.result(saga_id=cmd.saga_id, step=cmd.step, attempt=cmd.attempt, answer="42")

        async def undo(cmd: st.CompensateStep) -> None:
            self.undone.append(cmd.kind)

        every = {
            "reasoning": handles(st.REASONING, run=form, undo=undo),
            "think": handles(self.think, run=think, undo=undo),
        }
        return [every[n] for n in names or every]

    def worker(self, *names: str, chosen: set[str] | None = None) -> Worker:
        return Worker(Service.REASONING, self.handlers(*names), Streams("t"), chosen=chosen, kinds=self.registry)


@pytest.fixture
def kinds() -> Iterator[Kinds]:
    """A second kind of the reasoning service, with messages registered for this test only."""

    class Think(st.StepCommand):
        TYPE = "reasoning.TestThink"
        question: str

    class Thought(st.StepSucceeded):
        TYPE = "reasoning.TestThought"
        answer: str

    try:
        yield Kinds(StepKind("think", Service.REASONING, Think, Thought, own_stream=True))
    finally:
        for type_name in (Think.TYPE, Thought.TYPE):
            envelope._REGISTRY.pop(type_name)


def delivery(stream: str = "t:cmd:reasoning") -> Delivery:
    return Delivery(stream=stream, entry_id="1-0", fields={})


async def test_each_command_reaches_its_kinds_run_and_each_compensation_the_undo_of_its_kind(kinds: Kinds) -> None:
    worker = kinds.worker()
    assert worker.command_streams == [
        "t:cmd:reasoning:express",
        "t:cmd:reasoning",
        "t:cmd:reasoning.think:express",
        "t:cmd:reasoning.think",
    ], "each stream's express lane, subscribed first"
    think = kinds.think.command(saga_id=SAGA, step="ponder", attempt=1, question="why")
    (out,) = await worker.handle(envelope_for(think, correlation_id=str(SAGA)), delivery("t:cmd:reasoning.think"))
    assert kinds.ran == ["think"] and out.stream == "t:evt:reasoning"
    assert isinstance(out.envelope.message, kinds.think.result) and out.envelope.message.answer == "42"
    undo = st.CompensateStep(saga_id=SAGA, step="ponder", kind="think", attempt=1)
    (out,) = await worker.handle(envelope_for(undo, correlation_id=str(SAGA)), delivery())
    assert kinds.undone == ["think"]
    assert out.envelope.message == st.StepCompensated(saga_id=SAGA, step="ponder", kind="think", attempt=1)
    refused = st.FormHypothesis.model_construct(saga_id=SAGA, step="refused", attempt=2)
    (out,) = await worker.handle(envelope_for(refused, correlation_id=str(SAGA)), delivery())
    failed = out.envelope.message
    assert isinstance(failed, st.StepFailed) and (failed.kind, failed.error_kind, failed.attempt) == (
        "reasoning",
        "invalid_input",
        2,
    )


async def test_an_express_command_runs_beside_a_normal_one_in_flight_and_answers_on_the_express_reply_lane() -> None:
    normal_may_finish = asyncio.Event()
    ran: list[str] = []

    async def form(cmd: st.FormHypothesis) -> st.HypothesisFormed:
        ran.append(f"{cmd.step} started")
        if cmd.step == "slow":
            await normal_may_finish.wait()
        ran.append(f"{cmd.step} done")
        return st.HypothesisFormed.model_construct(saga_id=cmd.saga_id, step=cmd.step, attempt=cmd.attempt)

    async def undo(cmd: st.CompensateStep) -> None:
        raise AssertionError("not asked")

    worker = Worker(Service.REASONING, [handles(st.REASONING, run=form, undo=undo)], Streams("t"))

    def command(step: str) -> Any:
        return envelope_for(st.FormHypothesis.model_construct(saga_id=SAGA, step=step, attempt=1), correlation_id="s")

    normal = asyncio.create_task(worker.handle(command("slow"), delivery("t:cmd:reasoning")))
    second_normal = asyncio.create_task(worker.handle(command("queued"), delivery("t:cmd:reasoning")))
    await asyncio.sleep(0)
    (express,) = await asyncio.wait_for(worker.handle(command("urgent"), delivery("t:cmd:reasoning:express")), 5)
    assert ran == ["slow started", "urgent started", "urgent done"], "the normal lane runs one at a time"
    assert express.stream == "t:evt:reasoning:express"
    normal_may_finish.set()
    (out,), (out2,) = await normal, await second_normal
    assert out.stream == out2.stream == "t:evt:reasoning"
    assert ran[3:] == ["slow done", "queued started", "queued done"]


async def test_a_compensation_under_its_former_type_name_is_undone_and_answered_with_the_generic_reply() -> None:
    undone: list[st.CompensateStep] = []

    async def undo(cmd: st.CompensateStep) -> None:
        undone.append(cmd)

    async def train(cmd: st.TrainModel) -> st.ModelTrained:
        raise AssertionError("not asked")

    worker = Worker(Service.ML, [handles(st.ML, run=train, undo=undo)], Streams("t"))
    fields = {
        MESSAGE_ID: "m1",
        TYPE: "ml.CompensateModel",
        BODY: f'{{"saga_id": "{SAGA}", "step": "ml", "attempt": 3}}',
    }
    (out,) = await worker.handle(decode(fields), delivery("t:cmd:ml"))
    assert [(c.kind, c.attempt) for c in undone] == [("ml", 3)]
    assert out.envelope.type == "steps.StepCompensated"
    assert out.envelope.message == st.StepCompensated(saga_id=SAGA, step="ml", kind="ml", attempt=3)


def test_a_worker_refuses_to_start_unless_it_serves_whole_streams_of_kinds_its_service_hosts(kinds: Kinds) -> None:
    registry = kinds.registry
    assert serving(Service.REASONING, kinds.handlers(), None, registry) == []
    assert serving(Service.REASONING, kinds.handlers("reasoning"), None, registry) == [
        "no run and undo registered for think"
    ]
    assert serving(Service.REASONING, kinds.handlers("think"), {"think"}, registry) == []  # its stream alone
    twice = kinds.handlers("reasoning", "reasoning", "think")
    assert serving(Service.REASONING, twice, None, registry) == ["reasoning is registered twice"]
    assert serving(Service.ML, kinds.handlers("think"), None, registry) == ["think is not a kind ml hosts"]
    with pytest.raises(ValueError, match="the reasoning worker cannot start: no run and undo registered for think"):
        kinds.worker("reasoning")


def test_a_kind_sharing_its_services_stream_cannot_be_served_apart() -> None:
    kinds = StepKinds()
    kinds.add(st.CODEGEN)
    assert serving(Service.CODEGEN, [], {"codegen", "astrology"}, kinds) == [
        "astrology is not a kind codegen hosts",
        "no run and undo registered for codegen",
    ]


async def test_a_worker_chosen_for_one_stream_serves_only_that_streams_kinds(kinds: Kinds) -> None:
    worker = kinds.worker("think", chosen={"think"})
    assert worker.command_streams == ["t:cmd:reasoning.think:express", "t:cmd:reasoning.think"]
    form = st.FormHypothesis.model_construct(saga_id=SAGA, step="reasoning", attempt=1)
    with pytest.raises(ValueError, match=r"reasoning serves no kind for reasoning\.FormHypothesis"):
        await worker.handle(envelope_for(form, correlation_id=str(SAGA)), delivery())


def test_the_kinds_a_process_serves_come_from_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings().chosen() is None
    monkeypatch.setenv("ALPHASAGA_WORKER_KINDS", " think, reasoning ,")
    assert WorkerSettings().chosen() == {"think", "reasoning"}


def test_a_dead_lettered_command_fails_its_step_only_when_this_worker_serves_its_kind(kinds: Kinds) -> None:
    worker = kinds.worker()
    served = envelope_for(st.FormHypothesis.model_construct(saga_id=SAGA, step="r", attempt=2), correlation_id="c")
    letter = Delivery(stream="t:cmd:reasoning", entry_id="1-0", fields={}, envelope=served, error="boom")
    (out,) = worker.dead_lettered(letter, "9-0")
    failed = out.envelope.message
    assert isinstance(failed, st.StepFailed) and failed.kind == "reasoning" and failed.error_kind == "dead_lettered"
    assert failed.error.startswith("dead letter 9-0 in t:cmd:reasoning:dlq: boom")
    other = envelope_for(st.TrainModel.model_construct(saga_id=SAGA, step="ml", attempt=1), correlation_id="c")
    assert (
        worker.dead_lettered(Delivery(stream="t:cmd:reasoning", entry_id="2-0", fields={}, envelope=other), "9-1") == ()
    )


def test_past_its_deadline_an_outage_fails_the_step_retryably_naming_the_outage(kinds: Kinds) -> None:
    worker = kinds.worker()
    due = dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.UTC)
    command = st.FormHypothesis.model_construct(saga_id=SAGA, step="r", attempt=2, deadline=due)
    held = Delivery(
        stream="t:cmd:reasoning", entry_id="1-0", fields={}, envelope=envelope_for(command, correlation_id="c")
    )
    assert worker.deadline(held) == due.timestamp()
    (out,) = worker.outlasted(held, "PostgreSQL unreachable since 00:04:00 UTC, past the deadline: refused")
    failed = out.envelope.message
    assert isinstance(failed, st.StepFailed) and (failed.error_kind, failed.retryable, failed.attempt) == (
        "outage",
        True,
        2,
    )
    assert failed.error.startswith("PostgreSQL unreachable since 00:04:00 UTC")
    undo = envelope_for(st.CompensateStep(saga_id=SAGA, step="r", kind="reasoning", deadline=due), correlation_id="c")
    (out,) = worker.outlasted(Delivery(stream="t:cmd:reasoning", entry_id="2-0", fields={}, envelope=undo), "down")
    assert isinstance(out.envelope.message, st.CompensationFailed) and out.envelope.message.error == "outage: down"
    no_deadline = envelope_for(st.FormHypothesis.model_construct(saga_id=SAGA, step="r", attempt=1), correlation_id="c")
    assert worker.deadline(Delivery(stream="t:cmd:reasoning", entry_id="3-0", fields={}, envelope=no_deadline)) is None
