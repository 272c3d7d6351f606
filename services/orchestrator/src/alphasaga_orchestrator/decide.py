"""What the orchestrator does with one incoming message or one due timer: a function of
the saga's state and the input. It calls the aggregate's methods (which record events)
and returns the domain messages to send: step commands and compensations for the workers
of their kinds, lifecycle events for whoever follows sagas. Which stream each goes to and
its envelope are the committing adapter's (``plan.py``). No I/O and no clock: the time
comes in ``Context``, the retry jitter from a hash, so the same input always gives the
same decision."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from alphasaga_contracts import Message, SagaState
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.envelope import derived_message_id
from alphasaga_saga.aggregate import Saga, TimerKind, due_time
from alphasaga_saga.workflow import RetryPolicy, StepDefinition, Workflow, WorkflowRegistry


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A saga's deadline fell due. Its id makes the orchestrator's inbox fire it once."""

    saga_id: uuid.UUID
    kind: TimerKind
    step: str
    attempt: int

    @property
    def message_id(self) -> str:
        return f"timer:{self.saga_id}:{self.kind}:{self.step}:{self.attempt}"


class Received(Protocol):
    """A message as it arrived (the bus's envelope is one): its contract model and its id."""

    @property
    def message(self) -> Message: ...

    @property
    def message_id(self) -> str: ...


Incoming = Received | TimerFired


@dataclass(frozen=True, slots=True)
class ToWorker:
    """A step's command or compensation, for the worker that hosts the step's kind. Its id
    is recorded in the saga's event, so it is derived here, from what it is."""

    step: StepDefinition
    message: st.StepCommand | st.CompensateStep
    message_id: str


@dataclass(frozen=True, slots=True)
class ToFollowers:
    """A saga's lifecycle event, or a request's rejection, for whoever follows sagas."""

    message: sg.SagaEvent


Send = ToWorker | ToFollowers


@dataclass(slots=True)
class Decision:
    saga: Saga | None
    sends: list[Send] = field(default_factory=list)
    note: str = ""  # why nothing happened, for logs and tests


@dataclass(frozen=True, slots=True)
class OutageSeen:
    """An outage of a store this orchestrator waited out (``until`` None: still on)."""

    store: str  # its name for people: "PostgreSQL"
    since: dt.datetime
    until: dt.datetime | None = None

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return self.since <= end and (self.until is None or self.until >= start)

    def describe(self) -> str:
        at = self.since.strftime("%H:%M:%S UTC")
        if self.until is None:
            return f"{self.store} unreachable since {at}"
        return f"{self.store} unreachable from {at} for {(self.until - self.since).total_seconds():.0f} s"


@dataclass(frozen=True, slots=True)
class Context:
    workflows: WorkflowRegistry
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    traceparent: str = ""  # the incoming message's: a new saga keeps it as its parent trace
    # Outages seen lately: a deadline that passed during one says so in its reason.
    outages: tuple[OutageSeen, ...] = ()


def saga_id_for(message: Message, message_id: str) -> uuid.UUID:
    if isinstance(message, sg.StartResearch):
        return message.saga_id or sg.derived_saga_id(message_id)
    saga_id = getattr(message, "saga_id", None)
    if not isinstance(saga_id, uuid.UUID):
        raise TypeError(f"{message.TYPE} carries no saga id")
    return saga_id


def backoff_s(policy: RetryPolicy, saga_id: uuid.UUID, step: str, failed_attempt: int) -> float:
    """Exponential backoff with jitter; the jitter is a hash of the attempt, not a random
    draw, so that deciding again on the same state gives the same deadline."""
    base = min(policy.max_backoff_s, policy.backoff_s * policy.backoff_multiplier ** (failed_attempt - 1))
    digest = hashlib.blake2b(f"{saga_id}/{step}/{failed_attempt}".encode(), digest_size=8).digest()
    unit = int.from_bytes(digest) / 2**64 * 2 - 1  # in [-1, 1)
    return max(0.0, base * (1 + policy.jitter * unit))


def decide(saga: Saga | None, incoming: Incoming, ctx: Context) -> Decision:
    if isinstance(incoming, TimerFired):
        return _on_timer(saga, incoming, ctx)
    msg = incoming.message
    if isinstance(msg, sg.StartResearch):
        return _start(saga, msg, incoming, ctx)
    if saga is None:
        if isinstance(msg, sg.CancelSaga):
            return rejected(msg.saga_id, incoming, f"no saga {msg.saga_id} to cancel", ctx)
        return Decision(None, note=f"{msg.TYPE} for an unknown saga")
    d = Decision(saga)
    if saga.terminal:
        d.note = f"saga already {saga.state}"
        return d
    handler = _handler_for(type(msg))
    if handler is None:
        d.note = f"{msg.TYPE} is not for the orchestrator"
        return d
    return handler(d, saga, ctx.workflows.get(saga.workflow, saga.workflow_version), msg, ctx)


# What a message does to a running or compensating saga, by message type. A kind's result
# (``reasoning.HypothesisFormed`` is a ``StepSucceeded``) and a former type name's class
# are found through their base class.
MessageHandler = Callable[[Decision, Saga, Workflow, Any, Context], Decision]


def _handler_for(message_type: type[Message]) -> MessageHandler | None:
    for cls in message_type.__mro__:
        handler = _HANDLERS.get(cls)
        if handler is not None:
            return handler
    return None


def _on_cancel(d: Decision, saga: Saga, workflow: Workflow, msg: sg.CancelSaga, ctx: Context) -> Decision:
    if saga.state != SagaState.RUNNING:
        d.note = "already compensating"
        return d
    # A step attempt still waiting for its reply may finish after all: undo it too.
    dl = saga.deadline
    in_flight = dl["step"] if dl is not None and dl["kind"] == TimerKind.STEP_TIMEOUT else None
    _begin_compensation(d, saga, workflow, ctx, f"cancelled: {msg.reason}", interrupted=in_flight)
    return d


def _start(saga: Saga | None, msg: sg.StartResearch, env: Received, ctx: Context) -> Decision:
    if saga is not None:
        return Decision(saga, note="saga already started")
    saga_id = saga_id_for(msg, env.message_id)
    try:
        workflow = ctx.workflows.latest(msg.workflow)
    except KeyError:
        known = ", ".join(sorted({w.name for w in ctx.workflows.all()}))
        return rejected(saga_id, env, f"unknown workflow {msg.workflow!r} (known: {known})", ctx)
    saga = Saga(
        saga_id=saga_id,
        workflow=workflow.name,
        workflow_version=workflow.version,
        request=msg.request.model_dump(mode="json"),
        traceparent=ctx.traceparent,
    )
    d = Decision(saga)
    _publish(
        d,
        sg.SagaStarted(saga_id=saga_id, workflow=workflow.name, workflow_version=workflow.version, request=msg.request),
    )
    _command(d, saga, workflow.steps[0], 1, ctx)
    return d


def rejected(saga_id: uuid.UUID, env: Received, reason: str, ctx: Context) -> Decision:
    """Refuse a request that starts or changes no saga, and say so on the lifecycle stream
    so that whoever sent it learns why at once."""
    kind = env.message.TYPE
    event = sg.RequestRejected(saga_id=saga_id, request_type=kind, message_id=env.message_id, reason=reason)
    return Decision(None, [ToFollowers(event)], note=f"{kind} rejected: {reason}")


def _on_step_reply(
    d: Decision, saga: Saga, workflow: Workflow, msg: st.StepSucceeded | st.StepFailed, ctx: Context
) -> Decision:
    # Only the attempt we are waiting for counts: a reply to an attempt that timed out,
    # a duplicate, or a reply while compensating changes nothing.
    if saga.state != SagaState.RUNNING or not saga.waiting_for(TimerKind.STEP_TIMEOUT, msg.step, msg.attempt):
        d.note = f"late or duplicate reply for {msg.step} attempt {msg.attempt}"
        return d
    step = workflow.step(msg.step)
    if isinstance(msg, st.StepSucceeded):
        if not isinstance(msg, step.succeeded):
            d.note = f"{msg.TYPE} does not answer step {step.name}"
            return d
        outputs = msg.model_dump(mode="json", exclude=set(st.ENVELOPE_FIELDS))
        saga.step_succeeded(step=step.name, attempt=msg.attempt, outputs=outputs)
        _publish(d, sg.SagaStepCompleted(saga_id=saga.saga_id, step=step.name, attempt=msg.attempt))
        index = workflow.index(step.name)
        if index + 1 < len(workflow.steps):
            _command(d, saga, workflow.steps[index + 1], 1, ctx)
        else:
            saga.complete()
            _publish(d, sg.SagaCompleted(saga_id=saga.saga_id, outputs=outputs))
        return d
    saga.step_failed(step=step.name, attempt=msg.attempt, error_kind=msg.error_kind, error=msg.error)
    retryable = msg.retryable and msg.error_kind not in step.retry.non_retryable
    _after_failed_attempt(
        d, saga, workflow, step, msg.attempt, retryable, f"{step.name} failed ({msg.error_kind}): {msg.error}", ctx
    )
    return d


def _after_failed_attempt(
    d: Decision,
    saga: Saga,
    workflow: Workflow,
    step: StepDefinition,
    attempt: int,
    retryable: bool,
    reason: str,
    ctx: Context,
) -> None:
    will_retry = retryable and attempt < step.retry.max_attempts
    _publish(
        d,
        sg.SagaStepFailed(saga_id=saga.saga_id, step=step.name, attempt=attempt, error=reason, will_retry=will_retry),
    )
    if not will_retry:
        if retryable:
            reason = f"{reason}; gave up after {attempt} attempts"
        _begin_compensation(d, saga, workflow, ctx, reason)
        return
    delay = backoff_s(step.retry, saga.saga_id, step.name, attempt)
    if delay <= 0:
        _command(d, saga, step, attempt + 1, ctx)
    else:
        saga.schedule_retry(step=step.name, attempt=attempt + 1, due_at=_at(ctx, delay))


def _on_timer(saga: Saga | None, timer: TimerFired, ctx: Context) -> Decision:
    d = Decision(saga)
    if saga is None or saga.terminal or not saga.waiting_for(timer.kind, timer.step, timer.attempt):
        d.note = f"stale timer {timer.kind} for {timer.step} attempt {timer.attempt}"
        return d
    workflow = ctx.workflows.get(saga.workflow, saga.workflow_version)
    step = workflow.step(timer.step)
    if timer.kind == TimerKind.STEP_TIMEOUT:
        during = _outages_during(saga, step, ctx)
        saga.step_timed_out(step=step.name, attempt=timer.attempt)
        reason = f"{step.name} timed out after {step.timeout_s:g}s (attempt {timer.attempt}){during}"
        _after_failed_attempt(d, saga, workflow, step, timer.attempt, True, reason, ctx)
    elif timer.kind == TimerKind.RETRY:
        _command(d, saga, step, timer.attempt, ctx)
    elif timer.kind == TimerKind.COMPENSATION_TIMEOUT:
        error = f"no reply within {step.timeout_s:g}s{_outages_during(saga, step, ctx)}"
        saga.compensation_attempt_failed(step=step.name, attempt=timer.attempt, error=error)
        _after_failed_compensation(d, saga, step, timer.attempt, error, ctx)
    else:  # TimerKind.COMPENSATION_RETRY
        _command_compensation(d, saga, step, timer.attempt, ctx)
    return d


def _outages_during(saga: Saga, step: StepDefinition, ctx: Context) -> str:
    """ "; during an outage: PostgreSQL unreachable from …" when one overlapped the attempt
    whose deadline passed, so that the saga's record says why (issue #31)."""
    pending = saga.deadline
    if pending is None or not ctx.outages:
        return ""
    due = due_time(pending)
    seen = [o.describe() for o in ctx.outages if o.overlaps(due - dt.timedelta(seconds=step.timeout_s), ctx.now)]
    return f"; during an outage: {', '.join(seen)}" if seen else ""


def _on_compensation_reply(
    d: Decision, saga: Saga, workflow: Workflow, msg: st.StepCompensated | st.CompensationFailed, ctx: Context
) -> Decision:
    if saga.state != SagaState.COMPENSATING or not saga.waiting_for(
        TimerKind.COMPENSATION_TIMEOUT, msg.step, msg.attempt
    ):
        d.note = f"late or duplicate compensation reply for {msg.step} attempt {msg.attempt}"
        return d
    step = workflow.step(msg.step)
    if isinstance(msg, st.CompensationFailed):
        saga.compensation_attempt_failed(step=msg.step, attempt=msg.attempt, error=msg.error)
        _after_failed_compensation(d, saga, step, msg.attempt, msg.error, ctx)
        return d
    saga.step_compensated(step=msg.step)
    _next_compensation(d, saga, workflow, ctx)
    return d


def _after_failed_compensation(
    d: Decision, saga: Saga, step: StepDefinition, attempt: int, error: str, ctx: Context
) -> None:
    policy = step.compensation_retry
    if attempt >= policy.max_attempts:
        saga.fail_compensation(step=step.name, error=f"{error} (after {attempt} attempts)")
        _publish(d, sg.SagaCompensationFailed(saga_id=saga.saga_id, step=step.name, error=error))
        return
    delay = backoff_s(policy, saga.saga_id, f"{step.name}/compensation", attempt)
    if delay <= 0:
        _command_compensation(d, saga, step, attempt + 1, ctx)
    else:
        saga.schedule_compensation_retry(step=step.name, attempt=attempt + 1, due_at=_at(ctx, delay))


def _begin_compensation(
    d: Decision, saga: Saga, workflow: Workflow, ctx: Context, reason: str, interrupted: str | None = None
) -> None:
    saga.start_compensation(reason=reason, interrupted=interrupted)
    _publish(
        d,
        sg.SagaCompensating(saga_id=saga.saga_id, reason=reason, steps_to_compensate=list(saga.to_compensate)),
    )
    _next_compensation(d, saga, workflow, ctx)


def _next_compensation(d: Decision, saga: Saga, workflow: Workflow, ctx: Context) -> None:
    """Compensate the newest completed step still to undo, or end the saga ROLLED_BACK."""
    if not saga.to_compensate:
        saga.roll_back()
        _publish(d, sg.SagaRolledBack(saga_id=saga.saga_id, reason=saga.failure or "rolled back"))
        return
    _command_compensation(d, saga, workflow.step(saga.to_compensate[0]), 1, ctx)


def _command_compensation(d: Decision, saga: Saga, step: StepDefinition, attempt: int, ctx: Context) -> None:
    message_id = derived_message_id(str(saga.saga_id), step.name, "compensate", str(attempt))
    due = ctx.now + dt.timedelta(seconds=step.timeout_s)
    saga.command_compensation(step=step.name, attempt=attempt, message_id=message_id, due_at=due.isoformat())
    command = st.CompensateStep(
        saga_id=saga.saga_id, step=step.name, kind=step.kind.name, attempt=attempt, deadline=due
    )
    d.sends.append(ToWorker(step, command, message_id))


def _command(d: Decision, saga: Saga, step: StepDefinition, attempt: int, ctx: Context) -> None:
    message_id = derived_message_id(str(saga.saga_id), step.name, "attempt", str(attempt))
    inputs: dict[str, Any] = {k: saga.context[k] for k in step.inputs if k in saga.context}
    # The deadline is the timeout's: a worker waits out an outage until then, not after.
    due = ctx.now + dt.timedelta(seconds=step.timeout_s)
    command = step.command.model_validate(
        {"saga_id": saga.saga_id, "step": step.name, "attempt": attempt, "deadline": due, **inputs}
    )
    saga.command_step(step=step.name, attempt=attempt, message_id=message_id, due_at=due.isoformat())
    d.sends.append(ToWorker(step, command, message_id))


def _at(ctx: Context, seconds: float) -> str:
    return (ctx.now + dt.timedelta(seconds=seconds)).isoformat()


def _publish(d: Decision, event: sg.SagaEvent) -> None:
    d.sends.append(ToFollowers(event))


_HANDLERS: dict[type[Message], MessageHandler] = {
    sg.CancelSaga: _on_cancel,
    st.StepSucceeded: _on_step_reply,
    st.StepFailed: _on_step_reply,
    st.StepCompensated: _on_compensation_reply,
    st.CompensationFailed: _on_compensation_reply,
}
