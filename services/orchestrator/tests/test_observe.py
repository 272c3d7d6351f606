"""What the metrics and traces are told a decision did, and the trace ids commands carry
(pure: decide() on a saga's inputs, no I/O)."""

from __future__ import annotations

import dataclasses

from alphasaga_contracts import Message
from alphasaga_contracts.envelope import saga_trace_id
from alphasaga_orchestrator import observe
from alphasaga_orchestrator.decide import TimerFired, decide
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS
from alphasaga_shared import telemetry
from alphasaga_shared.wire import envelope_for
from tests.support.saga_inputs import CTX, SAGA, compensated, failure, start, success, timer


def play(*messages: Message | TimerFired, traceparent: str = "") -> tuple[Saga | None, list[observe.Observed | None]]:
    saga: Saga | None = None
    seen = []
    for i, m in enumerate(messages):
        incoming = (
            m
            if isinstance(m, TimerFired)
            else envelope_for(m, correlation_id=str(SAGA), message_id=f"m{i}", traceparent=traceparent)
        )
        before = observe.Before.of(saga)
        d = decide(saga, incoming, dataclasses.replace(CTX, traceparent=traceparent))
        if d.saga is not None:
            d.saga.collect_events()
        seen.append(observe.observe(before, d.saga, incoming, DEFAULT_WORKFLOWS))
        saga = d.saga
    return saga, seen


def test_a_completed_saga_is_started_its_four_attempts_end_succeeded_and_it_ends_completed() -> None:
    _, seen = play(start(), success("reasoning"), success("codegen"), success("ml"), success("backtest"))
    assert all(o is not None for o in seen)
    assert [o.started for o in seen if o] == [True, False, False, False, False]
    ended = [(a.kind, a.step, a.attempt, a.outcome) for o in seen if o and (a := o.ended_attempt)]
    assert ended == [("step", s, 1, "succeeded") for s in ("reasoning", "codegen", "ml", "backtest")]
    assert [o.ended for o in seen if o] == [None, None, None, None, "COMPLETED"]


def test_a_failed_step_then_its_compensations_are_observed_with_their_outcomes() -> None:
    _, seen = play(start(), success("reasoning"), failure("codegen"), compensated("reasoning"))
    failed = seen[2]
    assert failed is not None and failed.ended_attempt is not None
    assert (failed.ended_attempt.step, failed.ended_attempt.outcome) == ("codegen", "failed")
    assert failed.ended_attempt.error_kind == "invalid_input"
    undone = seen[3]
    assert undone is not None and undone.ended_attempt is not None
    assert (undone.ended_attempt.kind, undone.ended_attempt.step) == ("compensation", "reasoning")
    assert undone.ended_attempt.outcome == "compensated" and undone.ended == "ROLLED_BACK"


def test_a_timeout_ends_the_attempt_as_timed_out_and_the_next_attempt_counts_as_a_retry() -> None:
    _, seen = play(start(), timer("step_timeout", "reasoning", 1), timer("retry", "reasoning", 2))
    timed_out = seen[1]
    assert timed_out is not None and timed_out.timed_out == "reasoning"
    assert timed_out.ended_attempt is not None and timed_out.ended_attempt.outcome == "timed_out"
    retried = [o.retried for o in seen if o]
    assert "reasoning" in retried


def test_without_a_traceparent_the_saga_is_its_own_trace_and_each_command_names_its_attempt() -> None:
    saga, _ = play(start(), success("reasoning"))
    assert saga is not None
    root = observe.root_ids(SAGA, "")
    assert f"{root.trace_id:032x}" == saga_trace_id(SAGA, "") == SAGA.hex
    d = decide(saga, envelope_for(success("codegen"), correlation_id=str(SAGA), message_id="x"), CTX)
    assert d.saga is not None
    sent = observe.with_traceparents(d.saga, d.outgoing)
    command = sent[-1].envelope
    assert command.type == "ml.TrainModel"
    expected = observe.attempt_ids(root, SAGA, "step", "ml", 1)
    assert command.traceparent == expected.traceparent
    assert expected.span_id != observe.attempt_ids(root, SAGA, "step", "ml", 2).span_id
    lifecycle = [o.envelope.traceparent for o in sent if o.envelope.type.startswith("sagas.")]
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
