"""What the observers record of committed decisions (metrics and spans, keyed by the saga's
event classes), and the trace ids the adapter gives the messages a decision sends. Pure:
decide() and the plan on a saga's inputs, no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from prometheus_client import REGISTRY

from alphasaga_contracts import Message, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts.tracing import saga_trace_id
from alphasaga_orchestrator import observe
from alphasaga_orchestrator.decide import Context, TimerFired, decide
from alphasaga_orchestrator.plan import Plan
from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.workflow import WorkflowRegistry
from alphasaga_shared import telemetry
from alphasaga_shared.wire import envelope_for
from tests.support.saga_inputs import CTX, SAGA, compensated, failure, start, success, timer

REPO = SagaRepository(store=None, cache_size=0)  # type: ignore[arg-type]  # only its mapper is used


def play(*messages: Message | TimerFired, traced: bool = False, ctx: Context = CTX) -> tuple[Saga | None, list[Plan]]:
    """Decide on each input in a plan of its own, as the handler does, and observe it."""
    saga: Saga | None = None
    plans = []
    for i, m in enumerate(messages):
        incoming = m if isinstance(m, TimerFired) else envelope_for(m, correlation_id=str(SAGA), message_id=f"m{i}")
        plan = Plan(REPO, Streams("t"), traced=traced)
        before = plan.before(SAGA, saga)
        d = decide(before.saga, incoming, ctx)
        plan.add(SAGA, incoming, d, "")
        observe.record(plan.decided)
        saga = d.saga
        plans.append(plan)
    return saga, plans


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The spans the observers emit, with tracing on."""
    emitted: list[dict[str, Any]] = []

    def emit(name: str, ids: Any, parent: Any, start_ns: int, end_ns: int, attrs: dict[str, Any], error: bool) -> None:
        emitted.append({"name": name, "start": start_ns, "end": end_ns, "error": error, **attrs})

    monkeypatch.setattr(telemetry, "tracing", lambda: True)
    monkeypatch.setattr(telemetry, "emit_span", emit)
    return emitted


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def ended(spans: list[dict[str, Any]]) -> list[tuple[str, str, int, str]]:
    return [
        (s["alphasaga.kind"], s["alphasaga.step"], s["alphasaga.attempt"], s["alphasaga.outcome"])
        for s in spans
        if "alphasaga.kind" in s
    ]


def test_a_completed_saga_is_started_its_four_attempts_end_succeeded_and_it_ends_completed(
    spans: list[dict[str, Any]],
) -> None:
    started, completed = (
        sample("alphasaga_sagas_total", workflow="research", version="1", event=o) for o in ("started", "completed")
    )
    play(start(), success("reasoning"), success("codegen"), success("ml"), success("backtest"))
    assert ended(spans) == [("step", s, 1, "succeeded") for s in ("reasoning", "codegen", "ml", "backtest")]
    assert [(s["name"], s["alphasaga.outcome"], s["error"]) for s in spans][-1] == ("saga research", "completed", False)
    assert sample("alphasaga_sagas_total", workflow="research", version="1", event="started") == started + 1
    assert sample("alphasaga_sagas_total", workflow="research", version="1", event="completed") == completed + 1


def test_an_attempt_is_timed_from_the_event_that_commanded_it_to_the_event_that_ended_it(
    spans: list[dict[str, Any]],
) -> None:
    _, plans = play(start(), success("reasoning"))
    commanded = next(e for e in plans[0].decided[0].events if isinstance(e, Saga.StepCommanded))
    succeeded = next(e for e in plans[1].decided[0].events if isinstance(e, Saga.StepSucceeded))
    [span] = spans
    assert span["start"] == int(commanded.timestamp.timestamp() * 1e9)
    assert span["end"] == int(succeeded.timestamp.timestamp() * 1e9)


def test_a_failed_step_then_its_compensations_are_observed_with_their_outcomes(spans: list[dict[str, Any]]) -> None:
    play(start(), success("reasoning"), failure("codegen"), compensated("reasoning"))
    assert ended(spans) == [
        ("step", "reasoning", 1, "succeeded"),
        ("step", "codegen", 1, "failed"),
        ("compensation", "reasoning", 1, "compensated"),
    ]
    assert [s["alphasaga.error_kind"] for s in spans if s.get("alphasaga.outcome") == "failed"] == ["invalid_input"]
    assert spans[-1]["name"] == "saga research" and spans[-1]["alphasaga.outcome"] == "rolled_back"
    assert spans[-1]["error"]


def test_a_timeout_ends_the_attempt_as_timed_out_and_the_next_attempt_counts_as_a_retry(
    spans: list[dict[str, Any]],
) -> None:
    timeouts, retries = (
        sample("alphasaga_step_timeouts_total", step="reasoning"),
        sample("alphasaga_step_retries_total", step="reasoning"),
    )
    play(start(), timer("step_timeout", "reasoning", 1), timer("retry", "reasoning", 2), success("reasoning", 2))
    assert ended(spans) == [("step", "reasoning", 1, "timed_out"), ("step", "reasoning", 2, "succeeded")]
    assert sample("alphasaga_step_timeouts_total", step="reasoning") == timeouts + 1
    assert sample("alphasaga_step_retries_total", step="reasoning") == retries + 1


def test_a_retry_commanded_in_the_same_decision_keeps_the_failed_attempts_own_start(
    spans: list[dict[str, Any]],
) -> None:
    # With no backoff, attempt 2 is commanded in the decision that failed attempt 1.
    research = CTX.workflows.get("research", 1)
    steps = tuple(dataclasses.replace(s, retry=dataclasses.replace(s.retry, backoff_s=0.0)) for s in research.steps)
    ctx = dataclasses.replace(CTX, workflows=WorkflowRegistry(dataclasses.replace(research, steps=steps)))
    _, plans = play(start(), failure("reasoning", retryable=True), success("reasoning", 2), ctx=ctx)
    assert [type(e).__name__ for e in plans[1].decided[0].events] == ["StepFailed", "StepCommanded"]
    assert ended(spans) == [("step", "reasoning", 1, "failed"), ("step", "reasoning", 2, "succeeded")]
    first = next(e for e in plans[0].decided[0].events if isinstance(e, Saga.StepCommanded))
    second = next(e for e in plans[1].decided[0].events if isinstance(e, Saga.StepCommanded))
    assert spans[0]["start"] == int(first.timestamp.timestamp() * 1e9)
    assert spans[1]["start"] == int(second.timestamp.timestamp() * 1e9)


def test_a_cancel_ends_the_attempt_in_flight_as_cancelled_and_counts_the_cancel(spans: list[dict[str, Any]]) -> None:
    cancelled = sample("alphasaga_sagas_total", workflow="research", version="1", event="cancelled")
    play(start(), success("reasoning"), sg.CancelSaga(saga_id=SAGA, reason="no"))
    assert ended(spans)[-1] == ("step", "codegen", 1, "cancelled")
    assert sample("alphasaga_sagas_total", workflow="research", version="1", event="cancelled") == cancelled + 1


def test_without_a_traceparent_the_saga_is_its_own_trace_and_each_command_names_its_attempt() -> None:
    saga, plans = play(start(), success("reasoning"), success("codegen"), traced=True)
    assert saga is not None
    root = observe.root_ids(SAGA, "")
    assert f"{root.trace_id:032x}" == saga_trace_id(SAGA, "") == SAGA.hex
    sent = plans[-1].outbox
    command = sent[-1]
    assert command.type == "ml.TrainModel"
    expected = observe.attempt_ids(root, SAGA, "step", "ml", 1)
    assert command.metadata["traceparent"] == expected.traceparent
    assert expected.span_id != observe.attempt_ids(root, SAGA, "step", "ml", 2).span_id
    lifecycle = [r.metadata["traceparent"] for r in sent if r.type.startswith("sagas.")]
    assert lifecycle and set(lifecycle) == {root.traceparent}


def test_a_parent_that_is_not_sampled_leaves_the_whole_saga_unsampled() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    unsampled = observe.root_ids(SAGA, f"00-{trace}-00f067aa0ba902b7-00")
    sampled = observe.root_ids(SAGA, f"00-{trace}-00f067aa0ba902b7-01")
    assert f"{unsampled.trace_id:032x}" == trace and not unsampled.sampled
    assert sampled.sampled and sampled.span_id == unsampled.span_id
    assert not observe.attempt_ids(unsampled, SAGA, "step", "ml", 1).sampled


def test_the_ratio_decides_a_saga_that_starts_without_a_parent() -> None:
    try:
        telemetry.setup_tracing("test", None, 0.0)
        assert not observe.root_ids(SAGA, "").sampled
        telemetry.setup_tracing("test", None, 1.0)
        assert observe.root_ids(SAGA, "").sampled
    finally:
        telemetry.setup_tracing("test", None, 1.0)


def test_an_attempt_commanded_before_the_record_existed_is_not_timed_from_a_guess(spans: list[dict[str, Any]]) -> None:
    saga, _ = play(start())
    assert saga is not None
    del saga.__dict__["commanded"]  # as a saga read from a snapshot taken before it existed
    play_from = decide(saga, envelope_for(success("reasoning"), correlation_id=str(SAGA), message_id="x"), CTX)
    assert play_from.saga is not None
    events = play_from.saga.collect_events()
    observe.record(
        [observe.Decided(play_from.saga, events, envelope_for(success("reasoning"), correlation_id=str(SAGA)), {})]
    )
    assert ended(spans) == []
    assert dt.datetime.fromisoformat(play_from.saga.commanded["step:codegen"]["at"])  # recorded from now on
