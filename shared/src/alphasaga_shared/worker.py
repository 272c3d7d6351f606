"""The runtime of a worker service: turns step commands into replies.

A worker registers one handler per command type and one per compensation type. A
handler returns the success reply or raises ``StepError`` (a failure the orchestrator
should know about: bad input, a broken rule, a limit). Any other exception is treated
as transient: the bus redelivers the command, and dead-letters it after the cap.
Replies get ids derived from the command's id, and the bus's idempotency guard makes a
redelivered command an ack rather than a second run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alphasaga_contracts import Service, Streams
from alphasaga_contracts import steps as st

from . import telemetry
from .eventstore import StepUndone
from .runner import ServiceContext, run_service
from .wire import Delivery, Envelope, MalformedMessage, Outgoing, derived_message_id, envelope_for

log = logging.getLogger(__name__)


class StepError(Exception):
    """A step failed for a reason the saga must handle (it is not retried by the bus)."""

    def __init__(self, kind: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


StepHandler = Callable[[Any], Awaitable[st.StepSucceeded]]
CompensationHandler = Callable[[Any], Awaitable[None]]


@dataclass
class WorkerSpec:
    """A worker: its service (which fixes its six message types) and two handlers."""

    service: Service
    run: StepHandler
    undo: CompensationHandler

    @property
    def types(self) -> st.StepTypes:
        return st.STEP_TYPES[self.service]


class Worker:
    def __init__(self, spec: WorkerSpec, streams: Streams) -> None:
        self.spec = spec
        self.reply_stream = streams.events(spec.service)

    async def handle(self, env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        msg = env.message
        spec = self.spec
        types = spec.types
        reply: st.StepMessage
        if isinstance(msg, types.command):
            try:
                reply = await spec.run(msg)
            except StepError as exc:
                log.warning("%s failed for saga %s: %s", msg.TYPE, msg.saga_id, exc)
                reply = types.failed(
                    saga_id=msg.saga_id,
                    step=msg.step,
                    attempt=msg.attempt,
                    error_kind=exc.kind,
                    error=str(exc),
                    retryable=exc.retryable,
                )
            except StepUndone as exc:  # compensated while it ran: the saga no longer waits for it
                log.info("%s for saga %s stopped: %s", msg.TYPE, msg.saga_id, exc)
                reply = types.failed(
                    saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt, error_kind="undone", error=str(exc)
                )
        elif isinstance(msg, types.compensate):
            try:
                await spec.undo(msg)
                reply = types.compensated(saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt)
            except StepError as exc:
                reply = types.compensation_failed(
                    saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt, error=str(exc)
                )
        else:
            raise MalformedMessage(f"{spec.service} does not handle {msg.TYPE}")
        return [
            Outgoing(
                self.reply_stream,
                envelope_for(
                    reply,
                    correlation_id=env.correlation_id,
                    causation_id=env.message_id,
                    message_id=derived_message_id(env.message_id, reply.TYPE),
                    traceparent=telemetry.current_traceparent(),
                ),
            )
        ]


def run_worker(service: Service, make_spec: Callable[[ServiceContext], Awaitable[WorkerSpec]]) -> None:
    """Entry point of a worker service: one command at a time per process (steps are long;
    run more processes to scale), with the idempotency guard on."""

    async def setup(ctx: ServiceContext) -> None:
        worker = Worker(await make_spec(ctx), ctx.settings.streams)
        ctx.bus.subscribe(ctx.settings.streams.commands(service), worker.handle, dedupe=True, max_records=1)

    run_service(service.value, setup)
