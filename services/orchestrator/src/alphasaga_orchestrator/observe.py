"""What the decisions did, for metrics and traces: sagas started and ended, step attempts
and compensations ended (with their outcome and how long they took), retries, timeouts.

A saga's trace: the saga's own span is its root (or a child of the start request's span,
when it carried one); each step attempt and compensation is a child of it, and the
command that starts one names it as parent, so the worker's spans hang below it. Those
spans last longer than any message, so their ids are derived from what they are
(``telemetry.derived_span_id``) and they are emitted when they end. A saga's sampling is
decided once, by its trace id, and carried by every message's traceparent flags.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from alphasaga_contracts import SagaState
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.envelope import saga_trace_id
from alphasaga_saga.aggregate import Deadline, Saga, TimerKind, due_time
from alphasaga_saga.workflow import WorkflowRegistry
from alphasaga_shared import metrics, telemetry
from alphasaga_shared.telemetry import SpanIds
from alphasaga_shared.wire import Envelope, Outgoing

from .decide import Incoming, TimerFired

_WAITING = {TimerKind.STEP_TIMEOUT: "step", TimerKind.COMPENSATION_TIMEOUT: "compensation"}


def root_ids(saga_id: uuid.UUID, saga_traceparent: str) -> SpanIds:
    """The ids of the saga's own span (see the module docstring)."""
    parent = telemetry.parse_traceparent(saga_traceparent)
    trace_id = int(saga_trace_id(saga_id, saga_traceparent), 16)
    is_sampled = parent.trace_flags.sampled if parent is not None else telemetry.sampled(trace_id)
    return SpanIds(trace_id, telemetry.derived_span_id(saga_id, "saga"), is_sampled)


def attempt_ids(root: SpanIds, saga_id: uuid.UUID, kind: str, step: str, attempt: int) -> SpanIds:
    return SpanIds(root.trace_id, telemetry.derived_span_id(saga_id, kind, step, attempt), root.sampled)


def with_traceparents(saga: Saga, outgoing: Sequence[Outgoing]) -> list[Outgoing]:
    """The decision's messages, each naming the span it belongs to: a step command its
    attempt's, a compensation its own, a lifecycle event the saga's."""
    root = root_ids(saga.saga_id, saga.traceparent)
    out = []
    for o in outgoing:
        msg = o.envelope.message
        ids = root
        if isinstance(msg, st.StepCommand):
            ids = attempt_ids(root, saga.saga_id, "step", msg.step, msg.attempt)
        elif isinstance(msg, st.CompensateStep):
            ids = attempt_ids(root, saga.saga_id, "compensation", msg.step, msg.attempt)
        out.append(dataclasses.replace(o, envelope=dataclasses.replace(o.envelope, traceparent=ids.traceparent)))
    return out


@dataclass(frozen=True, slots=True)
class Before:
    state: str | None
    deadline: Deadline | None

    @classmethod
    def of(cls, saga: Saga | None) -> Before:
        if saga is None:
            return cls(None, None)
        return cls(str(saga.state), saga.deadline.copy() if saga.deadline else None)


@dataclass(frozen=True, slots=True)
class EndedAttempt:
    kind: str  # "step" or "compensation"
    step: str
    attempt: int
    started_at: dt.datetime
    outcome: str
    error_kind: str


@dataclass(frozen=True, slots=True)
class Observed:
    """What one decision changed, recorded once it is committed."""

    saga: Saga
    started: bool
    cancelled: bool
    ended_attempt: EndedAttempt | None
    ended: str | None  # the saga's final state, when this decision ended it
    retried: str | None  # a step commanded again
    timed_out: str | None


def observe(before: Before, saga: Saga | None, incoming: Incoming, workflows: WorkflowRegistry) -> Observed | None:
    if saga is None:
        return None
    after = saga.deadline
    ended_attempt = None
    pending = before.deadline
    if pending is not None and pending["kind"] in _WAITING and after != pending:
        step = workflows.get(saga.workflow, saga.workflow_version).step(pending["step"])
        # Commanded at its deadline less its timeout (the decision's clock); the saga's own
        # start is stamped a moment later by the aggregate, and a step does not start first.
        started_at = max(saga.created_on, due_time(pending) - dt.timedelta(seconds=step.timeout_s))
        outcome, error_kind = _outcome(incoming)
        ended_attempt = EndedAttempt(
            _WAITING[pending["kind"]], pending["step"], pending["attempt"], started_at, outcome, error_kind
        )
    retried = (
        after["step"]
        if after is not None and after != pending and after["kind"] == TimerKind.STEP_TIMEOUT and after["attempt"] > 1
        else None
    )
    timed_out = incoming.step if isinstance(incoming, TimerFired) and incoming.kind in _WAITING else None
    terminal = SagaState(saga.state).terminal
    was_terminal = before.state is not None and SagaState(before.state).terminal
    cancelled = (
        isinstance(incoming, Envelope)
        and isinstance(incoming.message, sg.CancelSaga)
        and before.state == SagaState.RUNNING
        and saga.state != SagaState.RUNNING
    )
    return Observed(
        saga=saga,
        started=before.state is None,
        cancelled=cancelled,
        ended_attempt=ended_attempt,
        ended=str(saga.state) if terminal and not was_terminal else None,
        retried=retried,
        timed_out=timed_out,
    )


def _outcome(incoming: Incoming) -> tuple[str, str]:
    if isinstance(incoming, TimerFired):
        return "timed_out", "timeout"
    msg = incoming.message
    if isinstance(msg, st.StepSucceeded):
        return "succeeded", ""
    if isinstance(msg, st.StepFailed):
        return "failed", msg.error_kind
    if isinstance(msg, st.StepCompensated):
        return "compensated", ""
    if isinstance(msg, st.CompensationFailed):
        return "failed", "compensation_failed"
    if isinstance(msg, sg.CancelSaga):
        return "cancelled", "cancelled"
    return "interrupted", ""


def record(observed: Sequence[Observed], now: dt.datetime) -> None:
    """Metrics and spans of committed decisions."""
    for o in observed:
        saga = o.saga
        workflow, version = saga.workflow, str(saga.workflow_version)
        if o.started:
            metrics.SAGAS.labels(workflow, version, "started").inc()
        if o.cancelled:
            metrics.SAGAS.labels(workflow, version, "cancelled").inc()
        if o.retried:
            metrics.STEP_RETRIES.labels(o.retried).inc()
        if o.timed_out:
            metrics.STEP_TIMEOUTS.labels(o.timed_out).inc()
        root = root_ids(saga.saga_id, saga.traceparent) if telemetry.tracing() else None
        base = (
            {
                "alphasaga.saga_id": str(saga.saga_id),
                "alphasaga.workflow": workflow,
                "alphasaga.workflow_version": saga.workflow_version,
            }
            if root is not None
            else {}
        )
        if (a := o.ended_attempt) is not None:
            seconds = max(0.0, (now - a.started_at).total_seconds())
            ids = attempt_ids(root, saga.saga_id, a.kind, a.step, a.attempt) if root is not None else None
            exemplar = {"trace_id": f"{ids.trace_id:032x}"} if ids is not None and ids.sampled else None
            metrics.STEP_SECONDS.labels(a.step, a.kind, a.outcome).observe(seconds, exemplar)
            if root is not None and ids is not None:
                telemetry.emit_span(
                    f"{'step' if a.kind == 'step' else 'compensate'} {a.step}",
                    ids,
                    root.context(),
                    _ns(a.started_at),
                    _ns(now),
                    {
                        **base,
                        "alphasaga.kind": a.kind,
                        "alphasaga.step": a.step,
                        "alphasaga.attempt": a.attempt,
                        "alphasaga.outcome": a.outcome,
                        "alphasaga.error_kind": a.error_kind,
                    },
                    error=a.outcome not in ("succeeded", "compensated"),
                )
        if o.ended is not None:
            outcome = SagaState(o.ended).value.lower()
            metrics.SAGAS.labels(workflow, version, outcome).inc()
            started = saga.created_on
            seconds = max(0.0, (now - started).total_seconds())
            exemplar = {"trace_id": f"{root.trace_id:032x}"} if root is not None and root.sampled else None
            metrics.SAGA_SECONDS.labels(workflow, outcome).observe(seconds, exemplar)
            if root is not None:
                telemetry.emit_span(
                    f"saga {workflow}",
                    root,
                    telemetry.parse_traceparent(saga.traceparent),
                    _ns(started),
                    _ns(now),
                    {**base, "alphasaga.outcome": outcome},
                    error=o.ended != SagaState.COMPLETED,
                )


def _ns(at: dt.datetime) -> int:
    return int(at.timestamp() * 1_000_000_000)
