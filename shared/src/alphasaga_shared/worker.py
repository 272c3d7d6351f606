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
from .wire import Delivery, Envelope, MalformedMessage, Outgoing, cap_text, derived_message_id, envelope_for

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
    def __init__(self, spec: WorkerSpec, streams: Streams, *, max_error_chars: int = 2000) -> None:
        self.spec = spec
        self.reply_stream = streams.events(spec.service)
        self.dead_letters = streams.dead_letters(streams.commands(spec.service))
        self.max_error_chars = max_error_chars

    def _error(self, exc: BaseException) -> str:
        return cap_text(str(exc), self.max_error_chars, "error")

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
                    error=self._error(exc),
                    retryable=exc.retryable,
                )
            except StepUndone as exc:  # compensated while it ran: the saga no longer waits for it
                log.info("%s for saga %s stopped: %s", msg.TYPE, msg.saga_id, exc)
                reply = types.failed(
                    saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt, error_kind="undone", error=self._error(exc)
                )
        elif isinstance(msg, types.compensate):
            try:
                await spec.undo(msg)
                reply = types.compensated(saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt)
            except StepError as exc:
                reply = types.compensation_failed(
                    saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt, error=self._error(exc)
                )
        else:
            raise MalformedMessage(f"{spec.service} does not handle {msg.TYPE}")
        return [self._reply(env, reply, telemetry.current_traceparent())]

    def dead_lettered(self, delivery: Delivery, dead_letter_id: str) -> Sequence[Outgoing]:
        """The bus dead-lettered a command (it kept failing, or it could not be decoded):
        reply with the step's failure now, naming the dead letter, so that the saga does not
        wait for the step's timeout. A command that could not be decoded names no step."""
        env = delivery.envelope
        if env is None:
            return ()
        msg, types = env.message, self.spec.types
        # The dead letter's id first: a long error is cut at its end.
        error = self._error(RuntimeError(f"dead letter {dead_letter_id} in {self.dead_letters}: {delivery.error}"))
        reply: st.StepMessage
        if isinstance(msg, types.command):
            reply = types.failed(
                saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt, error_kind="dead_lettered", error=error
            )
        elif isinstance(msg, types.compensate):
            reply = types.compensation_failed(saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt, error=error)
        else:
            return ()
        return [self._reply(env, reply, env.traceparent)]

    def _reply(self, env: Envelope, reply: st.StepMessage, traceparent: str) -> Outgoing:
        return Outgoing(
            self.reply_stream,
            envelope_for(
                reply,
                correlation_id=env.correlation_id,
                causation_id=env.message_id,
                message_id=derived_message_id(env.message_id, reply.TYPE),
                traceparent=traceparent,
            ),
        )


def run_worker(service: Service, make_spec: Callable[[ServiceContext], Awaitable[WorkerSpec]]) -> None:
    """Entry point of a worker service: one command at a time per process (steps are long;
    run more processes to scale), with the idempotency guard on."""

    async def setup(ctx: ServiceContext) -> None:
        worker = Worker(await make_spec(ctx), ctx.settings.streams, max_error_chars=ctx.settings.max_error_chars)
        ctx.bus.subscribe(
            ctx.settings.streams.commands(service),
            worker.handle,
            dedupe=True,
            max_records=1,
            on_dead_letter=worker.dead_lettered,
        )

    run_service(service.value, setup)
