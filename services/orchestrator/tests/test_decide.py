"""The orchestrator's decisions, as a table of (saga history, incoming message) cases.
Pure: no broker, no database."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import pytest

from alphasaga_contracts import Message, Service
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.steps import StepKind
from alphasaga_orchestrator.decide import Context, Decision, OutageSeen, TimerFired, backoff_s, decide
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.workflow import RESEARCH_V1, Workflow, WorkflowRegistry
from alphasaga_shared.wire import decode, envelope_for
from tests.support import replies
from tests.support.saga_inputs import (
    CTX,
    NOW,
    SAGA,
    compensated,
    compensation_failed,
    failure,
    start,
    success,
    timer,
    wired,
)


def play(*messages: Message | TimerFired, ctx: Context = CTX) -> tuple[Saga | None, list[Decision]]:
    saga: Saga | None = None
    decisions = []
    for i, m in enumerate(messages):
        incoming = m if isinstance(m, TimerFired) else envelope_for(m, correlation_id=str(SAGA), message_id=f"m{i}")
        d = decide(saga, incoming, ctx)
        if d.saga is not None:
            d.saga.collect_events()
        saga = d.saga
        decisions.append(d)
    return saga, decisions


def sent(d: Decision) -> list[str]:
    """The types sent; a compensation with the kind it undoes, ``steps.CompensateStep(ml)``."""
    return [
        f"{s.message.TYPE}({s.message.kind})" if isinstance(s.message, st.CompensateStep) else s.message.TYPE
        for s in d.sends
    ]


def test_start_commands_the_first_step_with_the_request() -> None:
    saga, (d,) = play(start())
    assert saga is not None and saga.state == "RUNNING"
    assert sent(d) == ["sagas.SagaStarted", "reasoning.FormHypothesis"]
    command = wired(d, "m0")[1]
    assert command.stream == "t:cmd:reasoning"
    assert isinstance(command.envelope.message, st.FormHypothesis)
    assert command.envelope.message.request.dataset == "sp500"
    assert command.envelope.causation_id == "m0"


def test_happy_path_runs_the_four_steps_in_order_and_completes() -> None:
    saga, ds = play(start(), success("reasoning"), success("codegen"), success("ml"), success("backtest"))
    assert saga is not None and saga.state == "COMPLETED"
    assert sent(ds[1])[-1] == "codegen.GenerateStrategy"
    assert sent(ds[2])[-1] == "ml.TrainModel"
    assert sent(ds[3])[-1] == "backtest.RunBacktest"
    assert sent(ds[4]) == ["sagas.StepCompleted", "sagas.SagaCompleted"]
    backtest = ds[3].sends[-1].message
    assert isinstance(backtest, st.RunBacktest)
    ref = replies.REF
    assert backtest.predictions == ref and backtest.signals == ref and backtest.dataset == ref


def test_ml_failure_compensates_codegen_then_reasoning_and_never_commands_backtest() -> None:
    saga, ds = play(
        start(),
        success("reasoning"),
        success("codegen"),
        failure("ml"),
        compensated("codegen"),
        compensated("reasoning"),
    )
    assert saga is not None and saga.state == "ROLLED_BACK"
    assert sent(ds[3]) == ["sagas.StepFailed", "sagas.SagaCompensating", "steps.CompensateStep(codegen)"]
    assert sent(ds[4]) == ["steps.CompensateStep(reasoning)"]
    assert sent(ds[5]) == ["sagas.SagaRolledBack"]
    assert not any("backtest" in t for d in ds for t in sent(d))


@pytest.mark.parametrize(
    ("history", "late", "why"),
    [
        ([start(), success("reasoning")], success("reasoning"), "duplicate reply"),
        ([start()], success("codegen"), "reply for a step not running"),
        ([start()], success("reasoning", attempt=2), "reply for another attempt"),
        ([start(), success("reasoning"), failure("codegen")], success("codegen"), "reply while compensating"),
        (
            [start(), success("reasoning"), failure("codegen"), compensated("reasoning")],
            success("codegen"),
            "reply after the saga ended",
        ),
        ([start()], start(), "second start"),
    ],
)
def test_late_duplicate_or_out_of_order_replies_change_nothing(history: list[Message], late: Message, why: str) -> None:
    saga, _ = play(*history)
    assert saga is not None
    version, state = saga.version, saga.state
    d = decide(saga, envelope_for(late, correlation_id=str(SAGA), message_id="late"), CTX)
    assert d.sends == [], why
    assert saga.collect_events() == [], why
    assert (saga.version, saga.state) == (version, state)
    assert d.note


def test_cancel_in_ml_compensates_ml_in_flight_then_codegen_and_reasoning() -> None:
    saga, ds = play(
        start(),
        success("reasoning"),
        success("codegen"),
        sg.CancelSaga(saga_id=SAGA, reason="user asked"),
        success("ml"),  # the attempt in flight finishes after all: a late reply, ignored
        compensated("ml"),
        compensated("codegen"),
        compensated("reasoning"),
    )
    assert saga is not None and saga.state == "ROLLED_BACK"
    # The ml attempt may still finish, so it is undone first, as the newest step.
    assert sent(ds[3]) == ["sagas.SagaCompensating", "steps.CompensateStep(ml)"]
    compensating = ds[3].sends[0].message
    assert isinstance(compensating, sg.SagaCompensating)
    assert compensating.steps_to_compensate == ["ml", "codegen", "reasoning"]
    assert ds[4].sends == [] and "late" in ds[4].note
    assert sent(ds[5]) == ["steps.CompensateStep(codegen)"]
    assert sent(ds[6]) == ["steps.CompensateStep(reasoning)"]
    assert saga.completed == ["reasoning", "codegen"]
    assert "cancelled: user asked" in (saga.failure or "")


def test_a_compensation_that_keeps_failing_ends_compensation_failed_after_its_retries() -> None:
    history: list[Message | TimerFired] = [start(), success("reasoning"), success("codegen"), failure("ml")]
    for attempt in range(1, 5):
        history += [compensation_failed("codegen", attempt), timer("compensation_retry", "codegen", attempt + 1)]
    history.append(compensation_failed("codegen", 5))
    saga, ds = play(*history)
    assert saga is not None and saga.state == "COMPENSATION_FAILED"
    assert sent(ds[-1]) == ["sagas.SagaCompensationFailed"]
    assert [sent(d) for d in ds[5:-1:2]] == [["steps.CompensateStep(codegen)"]] * 4, "retried with backoff"
    assert not any("steps.CompensateStep(reasoning)" in sent(d) for d in ds), "nothing else runs"
    after = decide(saga, envelope_for(compensated("reasoning"), correlation_id=str(SAGA)), CTX)
    assert after.sends == []


def test_a_retryable_failure_is_retried_after_a_backoff() -> None:
    saga, ds = play(start(), failure("reasoning", retryable=True))
    assert saga is not None and saga.state == "RUNNING"
    assert sent(ds[1]) == ["sagas.StepFailed"]
    failed = ds[1].sends[0].message
    assert isinstance(failed, sg.SagaStepFailed) and failed.will_retry
    assert saga.deadline is not None and saga.deadline["kind"] == "retry" and saga.deadline["attempt"] == 2
    due = dt.datetime.fromisoformat(saga.deadline["due_at"])
    assert due == NOW + dt.timedelta(seconds=backoff_s(RESEARCH_V1.step("reasoning").retry, SAGA, "reasoning", 1))
    saga, ds = play(start(), failure("reasoning", retryable=True), timer("retry", "reasoning", 2))
    assert sent(ds[2]) == ["reasoning.FormHypothesis"]
    command = ds[2].sends[0].message
    assert isinstance(command, st.FormHypothesis) and command.attempt == 2


def test_timeouts_twice_then_success_completes_the_step_on_the_third_attempt() -> None:
    saga, ds = play(
        start(),
        timer("step_timeout", "reasoning", 1),
        timer("retry", "reasoning", 2),
        timer("step_timeout", "reasoning", 2),
        timer("retry", "reasoning", 3),
        success("reasoning", attempt=3),
    )
    assert saga is not None and saga.state == "RUNNING"
    assert saga.completed == ["reasoning"] and saga.attempts["reasoning"] == 3
    assert sent(ds[-1])[-1] == "codegen.GenerateStrategy"


def test_attempts_exhausted_by_timeouts_compensate() -> None:
    history: list[Message | TimerFired] = [start(), success("reasoning")]
    for attempt in (1, 2):
        history += [timer("step_timeout", "codegen", attempt), timer("retry", "codegen", attempt + 1)]
    history.append(timer("step_timeout", "codegen", 3))
    saga, ds = play(*history)
    assert saga is not None and saga.state == "COMPENSATING"
    assert "timed out" in (saga.failure or "") and "gave up after 3 attempts" in (saga.failure or "")
    assert sent(ds[-1])[-1] == "steps.CompensateStep(reasoning)"


def test_a_non_retryable_failure_compensates_at_once() -> None:
    saga, ds = play(start(), success("reasoning"), failure("codegen", retryable=False))
    assert saga is not None and saga.state == "COMPENSATING"
    assert sent(ds[2])[-1] == "steps.CompensateStep(reasoning)"


@pytest.mark.parametrize(
    ("history", "fired", "why"),
    [
        ([start()], timer("step_timeout", "reasoning", 2), "timer for another attempt"),
        ([start(), success("reasoning")], timer("step_timeout", "reasoning", 1), "step already answered"),
        ([start(), failure("reasoning", retryable=True)], timer("step_timeout", "reasoning", 1), "already failed"),
        ([start(), failure("reasoning")], timer("retry", "reasoning", 2), "saga already ended"),
    ],
)
def test_stale_timers_change_nothing(history: list[Message], fired: TimerFired, why: str) -> None:
    saga, _ = play(*history)
    assert saga is not None
    version = saga.version
    d = decide(saga, fired, CTX)
    assert d.sends == [] and saga.collect_events() == [] and saga.version == version, why


def test_a_reply_to_an_attempt_that_timed_out_is_ignored() -> None:
    saga, ds = play(start(), timer("step_timeout", "reasoning", 1), success("reasoning", attempt=1))
    assert saga is not None and saga.completed == []
    assert ds[-1].sends == [] and "late" in ds[-1].note


def test_cancel_while_waiting_to_retry_compensates() -> None:
    # Nothing is in flight (the failed attempt answered): only what succeeded is undone.
    saga, ds = play(start(), success("reasoning"), failure("codegen", retryable=True), sg.CancelSaga(saga_id=SAGA))
    assert saga is not None and saga.state == "COMPENSATING"
    assert sent(ds[-1]) == ["sagas.SagaCompensating", "steps.CompensateStep(reasoning)"]
    assert saga.to_compensate == ["reasoning"]
    late_retry = decide(saga, timer("retry", "codegen", 2), CTX)
    assert late_retry.sends == []


def test_backoff_grows_and_its_jitter_is_deterministic() -> None:
    policy = RESEARCH_V1.step("ml").retry
    delays = [backoff_s(policy, SAGA, "ml", a) for a in (1, 2, 3)]
    assert delays == [backoff_s(policy, SAGA, "ml", a) for a in (1, 2, 3)]
    for attempt, delay in enumerate(delays, start=1):
        base = policy.backoff_s * policy.backoff_multiplier ** (attempt - 1)
        assert base * (1 - policy.jitter) <= delay <= base * (1 + policy.jitter)


def test_failure_of_the_first_step_rolls_back_at_once() -> None:
    saga, ds = play(start(), failure("reasoning"))
    assert saga is not None and saga.state == "ROLLED_BACK"
    assert sent(ds[1]) == ["sagas.StepFailed", "sagas.SagaCompensating", "sagas.SagaRolledBack"]


def test_message_ids_are_stable_for_the_same_decision() -> None:
    _, first = play(start(), success("reasoning"))
    _, again = play(start(), success("reasoning"))
    ids = [o.envelope.message_id for o in wired(first[1], "m1")]
    assert ids == [o.envelope.message_id for o in wired(again[1], "m1")]
    assert len(set(ids)) == len(ids) == 2


def test_a_kind_with_a_stream_of_its_own_gets_its_commands_and_compensations_there() -> None:
    apart = StepKind("reasoning", Service.REASONING, st.FormHypothesis, st.HypothesisFormed, own_stream=True)
    steps = tuple(replace(s, kind=apart) if s.name == "reasoning" else s for s in RESEARCH_V1.steps)
    ctx = replace(CTX, workflows=WorkflowRegistry(Workflow("research", 1, steps)))
    _, ds = play(start(), success("reasoning"), failure("codegen"), ctx=ctx)
    assert wired(ds[0], "m0")[-1].stream == "t:cmd:reasoning.reasoning"
    assert wired(ds[1], "m1")[-1].stream == "t:cmd:codegen"
    (compensate,) = (o for o in wired(ds[2], "m2") if isinstance(o.envelope.message, st.CompensateStep))
    assert compensate.stream == "t:cmd:reasoning.reasoning" and compensate.envelope.message.kind == "reasoning"


def former(type_name: str, **body: object) -> Message:
    """A reply as a worker of before step kinds sent it (``reasoning.HypothesisCompensated``…)."""
    fields = {"message_id": "x", "type": type_name, "body": json.dumps({"saga_id": str(SAGA), **body})}
    return decode(fields).message


def test_replies_under_their_former_type_names_move_the_saga_as_the_generic_ones_do() -> None:
    saga, ds = play(
        start(),
        success("reasoning"),
        success("codegen"),
        former("ml.TrainingFailed", step="ml", attempt=1, error_kind="invalid_input", error="boom"),
        former("codegen.StrategyCompensationFailed", step="codegen", attempt=1, error="disk on fire"),
        timer("compensation_retry", "codegen", 2),
        former("codegen.StrategyCompensated", step="codegen", attempt=2),
        former("reasoning.HypothesisCompensated", step="reasoning", attempt=1),
    )
    assert saga is not None and saga.state == "ROLLED_BACK"
    assert sent(ds[3])[-1] == "steps.CompensateStep(codegen)"
    assert sent(ds[5]) == ["steps.CompensateStep(codegen)"]
    assert sent(ds[6]) == ["steps.CompensateStep(reasoning)"]


@pytest.mark.parametrize(
    ("outage", "named"),
    [
        ((10, 70), "during an outage: PostgreSQL unreachable from 00:00:10 UTC for 60 s"),
        ((200, None), "during an outage: PostgreSQL unreachable since 00:03:20 UTC"),
        ((-100, -50), None),  # over before the attempt was commanded
    ],
)
def test_a_step_timeout_after_an_outage_names_it_and_the_command_carries_its_deadline(
    outage: tuple[int, int | None], named: str | None
) -> None:
    saga, (first,) = play(start())
    command = first.sends[-1].message
    assert isinstance(command, st.FormHypothesis)
    timeout = RESEARCH_V1.step("reasoning").timeout_s
    assert command.deadline == NOW + dt.timedelta(seconds=timeout)
    since, until = (NOW + dt.timedelta(seconds=s) if s is not None else None for s in outage)
    assert since is not None
    late = replace(CTX, now=NOW + dt.timedelta(seconds=timeout + 5), outages=(OutageSeen("PostgreSQL", since, until),))
    d = decide(saga, timer("step_timeout", "reasoning", 1), late)
    [failed] = [s.message for s in d.sends if isinstance(s.message, sg.SagaStepFailed)]
    assert failed.error.startswith(f"reasoning timed out after {timeout:g}s (attempt 1)")
    if named is None:
        assert "outage" not in failed.error, failed.error
    else:
        assert failed.error.endswith(named), failed.error
