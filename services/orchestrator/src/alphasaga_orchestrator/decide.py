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

from pydantic import ValidationError

from alphasaga_contracts import Message, SagaState
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.envelope import derived_message_id
from alphasaga_saga import dag
from alphasaga_saga.aggregate import Saga, TimerKind
from alphasaga_saga.workflow import RetryPolicy, StepDefinition, Workflow, WorkflowRegistry

from . import campaign as cp


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


@dataclass(frozen=True, slots=True)
class ToOrchestrator:
    """A message from one saga to another (a campaign's child's start or cancel; a child's
    end, for its campaign), sent through the orchestrator's own streams like any other:
    ``about`` is the saga it concerns (its correlation id)."""

    message: sg.StartResearch | sg.CancelSaga | sg.ChildSagaEnded
    message_id: str
    about: uuid.UUID


Send = ToWorker | ToFollowers | ToOrchestrator


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
    if isinstance(message, sg.StartResearch | sg.StartCampaign):
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
        d = _on_timer(saga, incoming, ctx)
        if saga is not None and d.sends:  # it decided something: the saga was running
            _tell_parent(d)
        return d
    msg = incoming.message
    if isinstance(msg, sg.StartResearch):
        return _start(saga, msg, incoming, ctx)
    if isinstance(msg, sg.StartCampaign):
        return _start_campaign(saga, msg, incoming, ctx)
    if saga is None:
        if isinstance(msg, sg.CancelSaga):
            return rejected(msg.saga_id, incoming, f"no saga {msg.saga_id} to cancel", ctx)
        return Decision(None, note=f"{msg.TYPE} for an unknown saga")
    d = Decision(saga)
    if saga.terminal:
        d.note = f"saga already {saga.state}"
        return d
    handler = _CAMPAIGN_HANDLERS.get(type(msg)) if cp.is_campaign(saga) else None
    handler = handler or _handler_for(type(msg))
    if handler is None:
        d.note = f"{msg.TYPE} is not for the orchestrator"
        return d
    handler(d, saga, ctx.workflows.get(saga.workflow, saga.workflow_version), msg, ctx)
    _tell_parent(d)
    return d


def _tell_parent(d: Decision) -> None:
    """A campaign's child that ended in this decision tells its campaign, in the same commit."""
    saga = d.saga
    parent = None if saga is None or not saga.terminal else cp.parent_of(saga)
    if saga is not None and parent is not None:
        d.sends.append(ToOrchestrator(cp.ended_notice(saga, parent), cp.notice_id(saga.saga_id), parent))


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
    _begin_compensation(d, saga, workflow, ctx, f"cancelled: {msg.reason}")
    return d


def _start(saga: Saga | None, msg: sg.StartResearch, env: Received, ctx: Context) -> Decision:
    if saga is not None:
        return Decision(saga, note="saga already started")
    saga_id = saga_id_for(msg, env.message_id)
    try:
        if msg.workflow_version is None:
            workflow = ctx.workflows.latest(msg.workflow)
        else:
            workflow = ctx.workflows.get(msg.workflow, msg.workflow_version)
    except KeyError:
        return _refused_start(saga_id, msg, env, _unknown_workflow(msg, ctx.workflows), ctx)
    problem = _fork_problem(workflow, msg.fork) if msg.fork is not None else None
    if workflow.name == cp.CAMPAIGN_WORKFLOW:
        problem = "a campaign is started by orchestrator.StartCampaign, not StartResearch"
    if problem is not None:
        return _refused_start(saga_id, msg, env, problem, ctx)
    fork = msg.fork
    forked_from = (
        None if fork is None else {"saga_id": str(fork.saga_id), "version": fork.version, "step": fork.from_step}
    )
    saga = Saga(
        saga_id=saga_id,
        workflow=workflow.name,
        workflow_version=workflow.version,
        request=msg.request.model_dump(mode="json"),
        traceparent=ctx.traceparent,
        forked_from=forked_from,
        parent=None if msg.parent is None else str(msg.parent),
        priority=msg.priority.value,
    )
    d = Decision(saga)
    started = sg.SagaStarted(
        saga_id=saga_id,
        workflow=workflow.name,
        workflow_version=workflow.version,
        request=msg.request,
        priority=msg.priority,
    )
    _publish(d, started)
    if fork is not None:
        saga.reuse(outputs=fork.reused, overrides=fork.overrides, from_saga=str(fork.saga_id))
    _advance(d, saga, workflow, ctx)
    _tell_parent(d)
    return d


def _refused_start(saga_id: uuid.UUID, msg: sg.StartResearch, env: Received, reason: str, ctx: Context) -> Decision:
    """A start refused; a campaign's child's refusal is also its campaign's to record."""
    d = rejected(saga_id, env, reason, ctx)
    if msg.parent is not None:
        notice = cp.rejected_notice(msg.parent, saga_id, reason)
        d.sends.append(ToOrchestrator(notice, cp.notice_id(saga_id), msg.parent))
    return d


# --- campaigns (docs/decisions/0022) ------------------------------------------------------


def _start_campaign(saga: Saga | None, msg: sg.StartCampaign, env: Received, ctx: Context) -> Decision:
    if saga is not None:
        return Decision(saga, note="campaign already started")
    saga_id = saga_id_for(msg, env.message_id)
    try:
        workflow = ctx.workflows.latest(cp.CAMPAIGN_WORKFLOW)
    except KeyError:
        return rejected(saga_id, env, f"no {cp.CAMPAIGN_WORKFLOW!r} workflow is defined", ctx)
    request = msg.spec.model_dump(mode="json")
    saga = Saga(saga_id, workflow.name, workflow.version, request, ctx.traceparent)
    d = Decision(saga)
    _publish(d, sg.CampaignStarted(saga_id=saga_id, spec=msg.spec))
    _start_children(d, saga)
    return d


def _start_children(d: Decision, saga: Saga) -> None:
    for child in cp.children_to_start(saga):
        saga.start_child(
            child=str(child.child_id),
            trial=child.plan.trial,
            message_id=child.message_id,
            trials_before=child.trials_before,
            trial_sharpe_std=child.trial_sharpe_std,
        )
        d.sends.append(ToOrchestrator(child.start, child.message_id, child.child_id))


def _on_child_ended(d: Decision, saga: Saga, workflow: Workflow, msg: sg.ChildSagaEnded, ctx: Context) -> Decision:
    child = saga.children().get(str(msg.child_id))
    if child is None or child["state"] != cp.RUNNING:
        d.note = f"no running child {msg.child_id} to record"
        return d
    saga.end_child(child=str(msg.child_id), outcome=cp.outcome(saga, msg, ctx.now).model_dump(mode="json"))
    done, running, failed = cp.progress(saga)
    _publish(
        d,
        sg.CampaignTrialEnded(
            saga_id=saga.saga_id,
            child_id=msg.child_id,
            trial=child["trial"],
            state=msg.state,
            done=done,
            running=running,
            failed=failed,
        ),
    )
    if saga.state == SagaState.COMPENSATING:
        if not running:
            _next_compensation(d, saga, workflow, ctx)  # every child it cancelled has ended
        return d
    _start_children(d, saga)  # a failed child does not fail the campaign: the next one starts
    if cp.all_started(saga) and not running:
        _advance(d, saga, workflow, ctx)  # the report
    return d


def _on_campaign_cancel(d: Decision, saga: Saga, workflow: Workflow, msg: sg.CancelSaga, ctx: Context) -> Decision:
    """Cancel the running children (each compensates what it did) and the report if it
    runs; the campaign ends ROLLED_BACK once they have. Children that ended stay as they are."""
    if saga.state != SagaState.RUNNING:
        d.note = "already compensating"
        return d
    reason = f"cancelled: {msg.reason}"
    saga.start_compensation(reason=reason, in_flight=saga.in_flight())
    _publish(d, sg.SagaCompensating(saga_id=saga.saga_id, reason=reason, steps_to_compensate=list(saga.to_compensate)))
    running = cp.running(saga)
    for child in running:
        cancel = sg.CancelSaga(saga_id=uuid.UUID(child), reason=f"its campaign {saga.saga_id} was {reason}")
        d.sends.append(ToOrchestrator(cancel, cp.cancel_id(saga.saga_id, child), uuid.UUID(child)))
    if not running:
        _next_compensation(d, saga, workflow, ctx)
    return d


def _fork_problem(workflow: Workflow, fork: sg.Fork) -> str | None:
    """Why a fork cannot start on ``workflow``: it must reuse exactly the steps its step
    needs, none of them fanned out, and change only values the steps use or produce."""
    try:
        workflow.step(fork.from_step)
    except KeyError as exc:
        return f"cannot fork from {fork.from_step}: {exc.args[0]}"
    needed = dag.ancestors(workflow, {}, fork.from_step)
    if set(fork.reused) != needed:
        return f"a fork from {fork.from_step} reuses {sorted(needed)}, not {sorted(fork.reused)}"
    if any(workflow.step(s).fan_out is not None for s in needed):
        return f"cannot fork from {fork.from_step}: a step it needs fans out (not supported yet)"
    known = {k for outputs in fork.reused.values() for k in outputs}
    known |= {i for s in workflow.steps if s.name not in needed for i in s.inputs}
    unknown = sorted(p for p in fork.overrides if p.split(".", 1)[0] not in known or p.startswith("request."))
    if unknown:
        return f"a fork changes only the reused outputs or the later steps' inputs, not {unknown}"
    return None


def _unknown_workflow(msg: sg.StartResearch, workflows: WorkflowRegistry) -> str:
    if msg.workflow_version is None:
        known = ", ".join(sorted({w.name for w in workflows.all()}))
        return f"unknown workflow {msg.workflow!r} (known: {known})"
    versions = ", ".join(f"v{w.version}" for w in workflows.all() if w.name == msg.workflow) or "none"
    return f"unknown workflow '{msg.workflow} v{msg.workflow_version}' (versions known: {versions})"


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
        saga.step_succeeded(step=msg.step, attempt=msg.attempt, outputs=outputs)
        _publish(d, sg.SagaStepCompleted(saga_id=saga.saga_id, step=msg.step, attempt=msg.attempt))
        _advance(d, saga, workflow, ctx)
        return d
    saga.step_failed(step=msg.step, attempt=msg.attempt, error_kind=msg.error_kind, error=msg.error)
    retryable = msg.retryable and msg.error_kind not in step.retry.non_retryable
    _after_failed_attempt(
        d, saga, workflow, msg.step, msg.attempt, retryable, f"{msg.step} failed ({msg.error_kind}): {msg.error}", ctx
    )
    return d


def _advance(d: Decision, saga: Saga, workflow: Workflow, ctx: Context) -> None:
    """Start every step whose needs are met and that has not started (planning the
    branches of a fan-out first), or complete the saga when every step has succeeded."""
    planned = saga.planned()  # the saga's own record: a fan-out below adds to it
    started = saga.attempts.keys() | saga.completed  # completed without an attempt: a fork's reused steps
    for step in workflow.steps:
        if step.fan_out is None and step.name in started:
            continue  # started already (the common case, cheaply)
        if step.fan_out is not None and step.name not in planned:
            if not dag.ready_to_fan_out(workflow, planned, saga.completed, step):
                continue
            try:
                items = dag.items_at(saga.context, step.fan_out.over)
            except dag.FanOutError as exc:
                _begin_compensation(d, saga, workflow, ctx, f"{step.name} cannot fan out: {exc}")
                return
            saga.fan_out(step=step.name, items=items)
        for name in dag.instances(step, planned) or []:
            ready = name not in started and dag.needs_met(workflow, planned, saga.completed, name)
            if ready and not _command(d, saga, workflow, name, 1, ctx):
                return
    if saga.has_pending():
        return  # a step still runs or waits for its retry
    everything = dag.all_instances(workflow, planned)
    if everything is not None and set(everything) <= set(saga.completed):
        saga.complete()
        _publish(d, sg.SagaCompleted(saga_id=saga.saga_id, outputs=saga.outputs))


def _after_failed_attempt(
    d: Decision,
    saga: Saga,
    workflow: Workflow,
    name: str,
    attempt: int,
    retryable: bool,
    reason: str,
    ctx: Context,
) -> None:
    """After a failed attempt of step (or branch) ``name``: another, or compensation."""
    step = workflow.step(name)
    will_retry = retryable and attempt < step.retry.max_attempts
    _publish(
        d,
        sg.SagaStepFailed(saga_id=saga.saga_id, step=name, attempt=attempt, error=reason, will_retry=will_retry),
    )
    if not will_retry:
        if retryable:
            reason = f"{reason}; gave up after {attempt} attempts"
        _begin_compensation(d, saga, workflow, ctx, reason)
        return
    delay = backoff_s(step.retry, saga.saga_id, name, attempt)
    if delay <= 0:
        _command(d, saga, workflow, name, attempt + 1, ctx)
    else:
        saga.schedule_retry(step=name, attempt=attempt + 1, due_at=_due(ctx, delay).isoformat())


def _on_timer(saga: Saga | None, timer: TimerFired, ctx: Context) -> Decision:
    d = Decision(saga)
    if saga is None or saga.terminal or not saga.waiting_for(timer.kind, timer.step, timer.attempt):
        d.note = f"stale timer {timer.kind} for {timer.step} attempt {timer.attempt}"
        return d
    workflow = ctx.workflows.get(saga.workflow, saga.workflow_version)
    name, step = timer.step, workflow.step(timer.step)
    if timer.kind == TimerKind.STEP_TIMEOUT:
        during = _outages_during(step, ctx)
        saga.step_timed_out(step=name, attempt=timer.attempt)
        reason = f"{name} timed out after {step.timeout_s:g}s (attempt {timer.attempt}){during}"
        _after_failed_attempt(d, saga, workflow, name, timer.attempt, True, reason, ctx)
    elif timer.kind == TimerKind.RETRY:
        _command(d, saga, workflow, name, timer.attempt, ctx)
    elif timer.kind == TimerKind.COMPENSATION_TIMEOUT:
        error = f"no reply within {step.timeout_s:g}s{_outages_during(step, ctx)}"
        saga.compensation_attempt_failed(step=name, attempt=timer.attempt, error=error)
        _after_failed_compensation(d, saga, workflow, name, timer.attempt, error, ctx)
    else:  # TimerKind.COMPENSATION_RETRY
        _command_compensation(d, saga, step, name, timer.attempt, ctx)
    return d


def _outages_during(step: StepDefinition, ctx: Context) -> str:
    """ "; during an outage: PostgreSQL unreachable from …" when one overlapped the attempt
    whose deadline passed now, so that the saga's record says why (issue #31)."""
    if not ctx.outages:
        return ""
    started = ctx.now - dt.timedelta(seconds=step.timeout_s)
    seen = [o.describe() for o in ctx.outages if o.overlaps(started, ctx.now)]
    return f"; during an outage: {', '.join(seen)}" if seen else ""


def _on_compensation_reply(
    d: Decision, saga: Saga, workflow: Workflow, msg: st.StepCompensated | st.CompensationFailed, ctx: Context
) -> Decision:
    if saga.state != SagaState.COMPENSATING or not saga.waiting_for(
        TimerKind.COMPENSATION_TIMEOUT, msg.step, msg.attempt
    ):
        d.note = f"late or duplicate compensation reply for {msg.step} attempt {msg.attempt}"
        return d
    if isinstance(msg, st.CompensationFailed):
        saga.compensation_attempt_failed(step=msg.step, attempt=msg.attempt, error=msg.error)
        _after_failed_compensation(d, saga, workflow, msg.step, msg.attempt, msg.error, ctx)
        return d
    saga.step_compensated(step=msg.step)
    _next_compensation(d, saga, workflow, ctx)
    return d


def _after_failed_compensation(
    d: Decision, saga: Saga, workflow: Workflow, name: str, attempt: int, error: str, ctx: Context
) -> None:
    step = workflow.step(name)
    policy = step.compensation_retry
    if attempt >= policy.max_attempts:
        saga.fail_compensation(step=name, error=f"{error} (after {attempt} attempts)")
        _publish(d, sg.SagaCompensationFailed(saga_id=saga.saga_id, step=name, error=error))
        return
    delay = backoff_s(policy, saga.saga_id, f"{name}/compensation", attempt)
    if delay <= 0:
        _command_compensation(d, saga, step, name, attempt + 1, ctx)
    else:
        saga.schedule_compensation_retry(step=name, attempt=attempt + 1, due_at=_due(ctx, delay).isoformat())


def _begin_compensation(d: Decision, saga: Saga, workflow: Workflow, ctx: Context, reason: str) -> None:
    """Stop the saga: no step starts again, and the steps still in flight (which may finish
    after all) are undone with those that succeeded."""
    saga.start_compensation(reason=reason, in_flight=saga.in_flight())
    _publish(
        d,
        sg.SagaCompensating(saga_id=saga.saga_id, reason=reason, steps_to_compensate=list(saga.to_compensate)),
    )
    _next_compensation(d, saga, workflow, ctx)


def _next_compensation(d: Decision, saga: Saga, workflow: Workflow, ctx: Context) -> None:
    """Compensate every step still to undo that no other one still to undo needs (newest
    first along each chain of needs; independent branches side by side), or end the saga
    ROLLED_BACK when none is left."""
    if not saga.to_compensate:
        saga.roll_back()
        _publish(d, sg.SagaRolledBack(saga_id=saga.saga_id, reason=saga.failure or "rolled back"))
        return
    planned = saga.planned()
    waiting = set(saga.to_compensate)
    blocked: set[str] = set()
    for name in saga.to_compensate:
        blocked |= dag.ancestors(workflow, planned, name) & waiting
    for name in saga.to_compensate:
        if name not in blocked and not saga.compensation_pending(name):
            _command_compensation(d, saga, workflow.step(name), name, 1, ctx)


def _command_compensation(d: Decision, saga: Saga, step: StepDefinition, name: str, attempt: int, ctx: Context) -> None:
    message_id = derived_message_id(str(saga.saga_id), name, "compensate", str(attempt))
    due = _due(ctx, step.timeout_s)
    saga.command_compensation(step=name, attempt=attempt, message_id=message_id, due_at=due.isoformat())
    command = st.CompensateStep(saga_id=saga.saga_id, step=name, kind=step.kind.name, attempt=attempt, deadline=due)
    d.sends.append(ToWorker(step, command, message_id))


def _command(d: Decision, saga: Saga, workflow: Workflow, name: str, attempt: int, ctx: Context) -> bool:
    """Command an attempt of step (or branch) ``name``; False when its inputs do not make a
    valid command, and the saga is compensating instead."""
    step = workflow.step(name)
    message_id = derived_message_id(str(saga.saga_id), name, "attempt", str(attempt))
    inputs: dict[str, Any] = {k: saga.context[k] for k in step.inputs if k in saga.context}
    if workflow.takes_branches(name):
        extra = dag.branch_inputs(workflow, saga.planned(), saga.completed, saga.branch_results(), name)
        inputs.update({k: v for k, v in extra.items() if k in step.inputs})
    # The deadline is the timeout's: a worker waits out an outage until then, not after.
    due = _due(ctx, step.timeout_s)
    try:
        command = step.command.model_validate(
            {"saga_id": saga.saga_id, "step": name, "attempt": attempt, "deadline": due, **inputs}
        )
    except ValidationError as exc:
        _begin_compensation(d, saga, workflow, ctx, f"{name}: its inputs make no valid command: {exc}")
        return False
    saga.command_step(step=name, attempt=attempt, message_id=message_id, due_at=due.isoformat())
    d.sends.append(ToWorker(step, command, message_id))
    return True


def _due(ctx: Context, seconds: float) -> dt.datetime:
    return ctx.now + dt.timedelta(seconds=seconds)


def _publish(d: Decision, event: sg.SagaEvent) -> None:
    d.sends.append(ToFollowers(event))


# A campaign's own: the rest (its report step's replies and timers) are any saga's.
_CAMPAIGN_HANDLERS: dict[type[Message], MessageHandler] = {
    sg.ChildSagaEnded: _on_child_ended,
    sg.CancelSaga: _on_campaign_cancel,
}

_HANDLERS: dict[type[Message], MessageHandler] = {
    sg.CancelSaga: _on_cancel,
    st.StepSucceeded: _on_step_reply,
    st.StepFailed: _on_step_reply,
    st.StepCompensated: _on_compensation_reply,
    st.CompensationFailed: _on_compensation_reply,
}
