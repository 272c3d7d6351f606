"""What the orchestrator does with one incoming message: a function of the saga's state
and the message. It calls the aggregate's methods (which record events) and returns the
messages to send. No I/O: the handler persists the events and the outgoing messages in
one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from alphasaga_contracts import Message, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_shared.wire import Envelope, Outgoing, derived_message_id, envelope_for

from .saga import Saga
from .workflow import StepDefinition, Workflow, WorkflowRegistry


@dataclass(slots=True)
class Decision:
    saga: Saga | None
    outgoing: list[Outgoing] = field(default_factory=list)
    note: str = ""  # why nothing happened, for logs and tests


@dataclass(frozen=True, slots=True)
class Context:
    streams: Streams
    workflows: WorkflowRegistry
    cause: str = ""  # set by decide() to the incoming message id: the causation id of what we send
    traceparent: str = ""


def saga_id_for(message: Message, message_id: str) -> uuid.UUID:
    if isinstance(message, sg.StartResearch):
        return message.saga_id or uuid.uuid5(uuid.NAMESPACE_URL, f"alphasaga-saga/{message_id}")
    saga_id = getattr(message, "saga_id", None)
    if not isinstance(saga_id, uuid.UUID):
        raise TypeError(f"{message.TYPE} carries no saga id")
    return saga_id


def decide(saga: Saga | None, env: Envelope, ctx: Context) -> Decision:
    msg = env.message
    ctx = replace(ctx, cause=env.message_id)
    if isinstance(msg, sg.StartResearch):
        return _start(saga, msg, env, ctx)
    if saga is None:
        return Decision(None, note=f"{msg.TYPE} for an unknown saga")
    d = Decision(saga)
    if saga.terminal:
        d.note = f"saga already {saga.state}"
        return d
    workflow = ctx.workflows.get(saga.workflow, saga.workflow_version)
    if isinstance(msg, sg.CancelSaga):
        if saga.state == "RUNNING":
            _begin_compensation(d, saga, workflow, ctx, f"cancelled: {msg.reason}")
        else:
            d.note = "already compensating"
        return d
    if isinstance(msg, st.StepSucceeded | st.StepFailed):
        return _on_step_reply(d, saga, workflow, msg, ctx)
    if isinstance(msg, st.StepCompensated | st.CompensationFailed):
        return _on_compensation_reply(d, saga, workflow, msg, ctx)
    d.note = f"{msg.TYPE} is not for the orchestrator"
    return d


def _start(saga: Saga | None, msg: sg.StartResearch, env: Envelope, ctx: Context) -> Decision:
    if saga is not None:
        return Decision(saga, note="saga already started")
    workflow = ctx.workflows.latest(msg.workflow)
    saga_id = saga_id_for(msg, env.message_id)
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
        saga,
        ctx,
        sg.SagaStarted(saga_id=saga_id, workflow=workflow.name, workflow_version=workflow.version, request=msg.request),
    )
    _command(d, saga, workflow.steps[0], 1, ctx)
    return d


def _on_step_reply(
    d: Decision, saga: Saga, workflow: Workflow, msg: st.StepSucceeded | st.StepFailed, ctx: Context
) -> Decision:
    if saga.state != "RUNNING" or msg.step != saga.current_step or msg.attempt != saga.current_attempt:
        d.note = f"late or duplicate reply for {msg.step} attempt {msg.attempt}"
        return d
    step = workflow.step(msg.step)
    if isinstance(msg, st.StepSucceeded):
        if not isinstance(msg, step.succeeded):
            d.note = f"{msg.TYPE} does not answer step {step.name}"
            return d
        outputs = msg.model_dump(mode="json", exclude=set(st.ENVELOPE_FIELDS))
        saga.step_succeeded(step=step.name, attempt=msg.attempt, outputs=outputs)
        _publish(d, saga, ctx, sg.SagaStepCompleted(saga_id=saga.saga_id, step=step.name, attempt=msg.attempt))
        index = workflow.index(step.name)
        if index + 1 < len(workflow.steps):
            _command(d, saga, workflow.steps[index + 1], 1, ctx)
        else:
            saga.complete()
            _publish(d, saga, ctx, sg.SagaCompleted(saga_id=saga.saga_id, outputs=outputs))
        return d
    saga.step_failed(step=step.name, attempt=msg.attempt, error_kind=msg.error_kind, error=msg.error)
    _publish(
        d,
        saga,
        ctx,
        sg.SagaStepFailed(saga_id=saga.saga_id, step=step.name, attempt=msg.attempt, error=msg.error, will_retry=False),
    )
    _begin_compensation(d, saga, workflow, ctx, f"{step.name} failed ({msg.error_kind}): {msg.error}")
    return d


def _on_compensation_reply(
    d: Decision, saga: Saga, workflow: Workflow, msg: st.StepCompensated | st.CompensationFailed, ctx: Context
) -> Decision:
    if saga.state != "COMPENSATING" or msg.step != saga.compensating_step or msg.attempt != saga.compensation_attempt:
        d.note = f"late or duplicate compensation reply for {msg.step}"
        return d
    if isinstance(msg, st.CompensationFailed):
        saga.fail_compensation(step=msg.step, error=msg.error)
        _publish(d, saga, ctx, sg.SagaCompensationFailed(saga_id=saga.saga_id, step=msg.step, error=msg.error))
        return d
    saga.step_compensated(step=msg.step)
    _next_compensation(d, saga, workflow, ctx)
    return d


def _begin_compensation(d: Decision, saga: Saga, workflow: Workflow, ctx: Context, reason: str) -> None:
    saga.start_compensation(reason=reason)
    _publish(
        d,
        saga,
        ctx,
        sg.SagaCompensating(saga_id=saga.saga_id, reason=reason, steps_to_compensate=list(saga.to_compensate)),
    )
    _next_compensation(d, saga, workflow, ctx)


def _next_compensation(d: Decision, saga: Saga, workflow: Workflow, ctx: Context) -> None:
    """Compensate the newest completed step still to undo, or end the saga ROLLED_BACK."""
    if not saga.to_compensate:
        saga.roll_back()
        _publish(d, saga, ctx, sg.SagaRolledBack(saga_id=saga.saga_id, reason=saga.failure or "rolled back"))
        return
    step = workflow.step(saga.to_compensate[0])
    message_id = derived_message_id(str(saga.saga_id), step.name, "compensate", "1")
    saga.command_compensation(step=step.name, attempt=1, message_id=message_id)
    command = step.compensate(saga_id=saga.saga_id, step=step.name, attempt=1)
    d.outgoing.append(_out(ctx.streams.commands(step.service), command, saga, message_id, ctx))


def _command(d: Decision, saga: Saga, step: StepDefinition, attempt: int, ctx: Context) -> None:
    message_id = derived_message_id(str(saga.saga_id), step.name, "attempt", str(attempt))
    inputs: dict[str, Any] = {k: saga.context[k] for k in step.command_inputs() if k in saga.context}
    command = step.command.model_validate({"saga_id": saga.saga_id, "step": step.name, "attempt": attempt, **inputs})
    saga.command_step(step=step.name, attempt=attempt, message_id=message_id)
    d.outgoing.append(_out(ctx.streams.commands(step.service), command, saga, message_id, ctx))


def _publish(d: Decision, saga: Saga, ctx: Context, event: sg.SagaEvent) -> None:
    message_id = derived_message_id(str(saga.saga_id), event.TYPE, str(saga.version + len(d.outgoing)))
    d.outgoing.append(_out(ctx.streams.sagas, event, saga, message_id, ctx))


def _out(stream: str, message: Message, saga: Saga, message_id: str, ctx: Context) -> Outgoing:
    return Outgoing(
        stream,
        envelope_for(
            message,
            correlation_id=str(saga.saga_id),
            causation_id=ctx.cause,
            message_id=message_id,
            traceparent=ctx.traceparent or saga.traceparent,
        ),
    )
