"""What committed decisions did, as metrics and traces: observers keyed by the saga's event
classes, run after the commit (sagas started and ended, step attempts and compensations
ended with their outcome and duration, retries, timeouts).

A saga's trace: the saga's own span is its root (or a child of the start request's span,
when it carried one); each step attempt and compensation is a child of it, and the
command that starts one names it as parent, so the worker's spans hang below it. Those
spans last longer than any message, so their ids are derived from what they are
(``telemetry.derived_span_id``) and they are emitted when they end, timed from the
event that commanded them to the event that ended them. A saga's sampling is decided
once, by its trace id, and carried by every message's traceparent flags.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alphasaga_contracts import SagaState
from alphasaga_contracts import saga as sg
from alphasaga_contracts.tracing import saga_trace_id
from alphasaga_saga.aggregate import Saga
from alphasaga_shared import metrics, telemetry
from alphasaga_shared.telemetry import SpanIds

from .decide import Incoming, TimerFired


def root_ids(saga_id: uuid.UUID, saga_traceparent: str) -> SpanIds:
    """The ids of the saga's own span (see the module docstring)."""
    parent = telemetry.parse_traceparent(saga_traceparent)
    trace_id = int(saga_trace_id(saga_id, saga_traceparent), 16)
    is_sampled = parent.trace_flags.sampled if parent is not None else telemetry.sampled(trace_id)
    return SpanIds(trace_id, telemetry.derived_span_id(saga_id, "saga"), is_sampled)


def attempt_ids(root: SpanIds, saga_id: uuid.UUID, kind: str, step: str, attempt: int) -> SpanIds:
    return SpanIds(root.trace_id, telemetry.derived_span_id(saga_id, kind, step, attempt), root.sampled)


@dataclass(frozen=True, slots=True)
class Decided:
    """A committed decision: the saga after it, the events it recorded, what caused them,
    and the saga's ``commanded`` record as it was before (the attempts its events end)."""

    saga: Saga
    events: Sequence[Any]
    incoming: Incoming
    commanded_before: dict[str, dict[str, Any]]


@dataclass(slots=True)
class _Observation:
    saga: Saga
    incoming: Incoming
    commanded: dict[str, dict[str, Any]]
    root: SpanIds | None = None
    base: dict[str, Any] = field(default_factory=dict)

    def ended(self, kind: str, step: str, at: dt.datetime, outcome: str, error_kind: str = "") -> None:
        """An attempt of ``step`` (or its compensation) ended: its duration and its span."""
        started = self.commanded.get(f"{kind}:{step}")
        if started is None:  # commanded before this record existed (an old snapshot)
            return
        attempt, began = int(started["attempt"]), dt.datetime.fromisoformat(started["at"])
        seconds = max(0.0, (at - began).total_seconds())
        saga_id = self.saga.saga_id
        ids = attempt_ids(self.root, saga_id, kind, step, attempt) if self.root is not None else None
        exemplar = {"trace_id": f"{ids.trace_id:032x}"} if ids is not None and ids.sampled else None
        metrics.STEP_SECONDS.labels(step, kind, outcome).observe(seconds, exemplar)
        if self.root is not None and ids is not None:
            telemetry.emit_span(
                f"{'step' if kind == 'step' else 'compensate'} {step}",
                ids,
                self.root.context(),
                _ns(began),
                _ns(at),
                {
                    **self.base,
                    "alphasaga.kind": kind,
                    "alphasaga.step": step,
                    "alphasaga.attempt": attempt,
                    "alphasaga.outcome": outcome,
                    "alphasaga.error_kind": error_kind,
                },
                error=outcome not in ("succeeded", "compensated"),
            )


def record(decided: Sequence[Decided]) -> None:
    """Run each committed event through its observer, in the order it was recorded."""
    for d in decided:
        o = _Observation(d.saga, d.incoming, dict(d.commanded_before))
        if telemetry.tracing():
            o.root = root_ids(d.saga.saga_id, d.saga.traceparent)
            o.base = {
                "alphasaga.saga_id": str(d.saga.saga_id),
                "alphasaga.workflow": d.saga.workflow,
                "alphasaga.workflow_version": d.saga.workflow_version,
            }
        for event in d.events:
            observer = OBSERVERS.get(type(event))
            if observer is not None:
                observer(o, event)


def _labels(o: _Observation) -> tuple[str, str]:
    return o.saga.workflow, str(o.saga.workflow_version)


def _started(o: _Observation, e: Any) -> None:
    metrics.SAGAS.labels(*_labels(o), "started").inc()


def _commanded(kind: str) -> Callable[[_Observation, Any], None]:
    def observe(o: _Observation, e: Any) -> None:
        o.commanded[f"{kind}:{e.step}"] = {"attempt": e.attempt, "at": e.timestamp.isoformat()}
        if kind == "step" and e.attempt > 1:
            metrics.STEP_RETRIES.labels(e.step).inc()

    return observe


def _step_succeeded(o: _Observation, e: Saga.StepSucceeded) -> None:
    o.ended("step", e.step, e.timestamp, "succeeded")


def _step_failed(o: _Observation, e: Saga.StepFailed) -> None:
    o.ended("step", e.step, e.timestamp, "failed", e.error_kind)


def _step_timed_out(o: _Observation, e: Saga.StepTimedOut) -> None:
    metrics.STEP_TIMEOUTS.labels(e.step).inc()
    o.ended("step", e.step, e.timestamp, "timed_out", "timeout")


def _compensation_started(o: _Observation, e: Saga.CompensationStarted) -> None:
    incoming = o.incoming
    if not isinstance(incoming, TimerFired) and isinstance(incoming.message, sg.CancelSaga):
        metrics.SAGAS.labels(*_labels(o), "cancelled").inc()
    interrupted = getattr(e, "interrupted", None)
    if interrupted:  # a cancel met this step's attempt in flight
        o.ended("step", interrupted, e.timestamp, "cancelled", "cancelled")


def _compensated(o: _Observation, e: Saga.StepCompensated) -> None:
    o.ended("compensation", e.step, e.timestamp, "compensated")


def _compensation_attempt_failed(o: _Observation, e: Saga.CompensationAttemptFailed) -> None:
    if isinstance(o.incoming, TimerFired):
        metrics.STEP_TIMEOUTS.labels(e.step).inc()
        o.ended("compensation", e.step, e.timestamp, "timed_out", "timeout")
    else:
        o.ended("compensation", e.step, e.timestamp, "failed", "compensation_failed")


def _saga_ended(state: SagaState) -> Callable[[_Observation, Any], None]:
    outcome = state.value.lower()

    def observe(o: _Observation, e: Any) -> None:
        saga = o.saga
        metrics.SAGAS.labels(*_labels(o), outcome).inc()
        seconds = max(0.0, (e.timestamp - saga.created_on).total_seconds())
        exemplar = {"trace_id": f"{o.root.trace_id:032x}"} if o.root is not None and o.root.sampled else None
        metrics.SAGA_SECONDS.labels(saga.workflow, outcome).observe(seconds, exemplar)
        if o.root is not None:
            telemetry.emit_span(
                f"saga {saga.workflow}",
                o.root,
                telemetry.parse_traceparent(saga.traceparent),
                _ns(saga.created_on),
                _ns(e.timestamp),
                {**o.base, "alphasaga.outcome": outcome},
                error=state != SagaState.COMPLETED,
            )

    return observe


# The saga's events each observer is for (cosmicpython's EVENT_HANDLERS).
OBSERVERS: dict[type, Callable[[_Observation, Any], None]] = {
    Saga.Started: _started,  # type: ignore[attr-defined]  # made by @event("Started")
    Saga.StepCommanded: _commanded("step"),
    Saga.StepSucceeded: _step_succeeded,
    Saga.StepFailed: _step_failed,
    Saga.StepTimedOut: _step_timed_out,
    Saga.CompensationStarted: _compensation_started,
    Saga.CompensationCommanded: _commanded("compensation"),
    Saga.StepCompensated: _compensated,
    Saga.CompensationAttemptFailed: _compensation_attempt_failed,
    Saga.Completed: _saga_ended(SagaState.COMPLETED),
    Saga.RolledBack: _saga_ended(SagaState.ROLLED_BACK),
    Saga.CompensationFailed: _saga_ended(SagaState.COMPENSATION_FAILED),
}


def _ns(at: dt.datetime) -> int:
    return int(at.timestamp() * 1_000_000_000)
