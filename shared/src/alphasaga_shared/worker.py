"""The runtime of a worker service: turns step commands into replies.

A worker registers a ``run`` and an ``undo`` for each step kind its service hosts
(``handles(kind, run=…, undo=…)``, as Temporal registers activities on a worker). ``run`` returns the
kind's result or raises ``StepError`` (a failure the orchestrator should know about: bad
input, a broken rule, a limit). An outage of a store is waited out by the bus until the
command's deadline (then the step fails on it, retryable: ``outlasted``). Any other
exception is treated as transient: the bus redelivers the command, and dead-letters it
after the cap. Replies get ids derived from
the command's id, and the bus's idempotency guard makes a redelivered command an ack
rather than a second run.

Each command stream has an express lane (``Streams.lanes``): the worker reads it apart,
runs its commands in a slot of their own, beside the normal lane's one at a time, and
replies on the express lane of its reply stream, so that an express saga never waits
behind normal commands (docs/decisions/0023).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from alphasaga_contracts import Priority, Service, Streams
from alphasaga_contracts import steps as st
from alphasaga_contracts.steps import KINDS, C, R, StepKind, StepKinds

from . import telemetry
from .eventstore import StepUndone
from .runner import ServiceContext, StartupError, run_service
from .wire import Delivery, Envelope, MalformedMessage, Outgoing, cap_text, derived_message_id, envelope_for

log = logging.getLogger(__name__)


class StepError(Exception):
    """A step failed for a reason the saga must handle (it is not retried by the bus)."""

    def __init__(self, kind: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


Undo = Callable[[st.CompensateStep], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class KindHandlers:
    """A step kind's two functions, as a worker registers them (built by ``handles``)."""

    kind: StepKind[Any, Any]
    run: Callable[[Any], Awaitable[st.StepSucceeded]]
    undo: Undo


def handles(kind: StepKind[C, R], *, run: Callable[[C], Awaitable[R]], undo: Undo) -> KindHandlers:
    """Register ``kind`` on a worker: ``run`` turns its command into its result (type-checked
    against the kind's), ``undo`` takes back what a step of that kind did (idempotent: it may
    come twice, or for a step that did nothing)."""
    return KindHandlers(kind, run, undo)


class WorkerSettings(BaseSettings):
    """``ALPHASAGA_WORKER_KINDS``: the kinds this process serves, comma-separated (by
    default all its service hosts), so that a kind with a stream of its own can run in
    processes of its own and scale apart."""

    model_config = SettingsConfigDict(env_prefix="ALPHASAGA_WORKER_", extra="ignore")
    kinds: str = ""

    def chosen(self) -> set[str] | None:
        names = {n.strip() for n in self.kinds.split(",") if n.strip()}
        return names or None


def serving(
    service: Service, handlers: Sequence[KindHandlers], chosen: set[str] | None, kinds: StepKinds = KINDS
) -> list[str]:
    """What is wrong with serving the ``chosen`` kinds (all the service hosts when None)
    with ``handlers``: a kind the service does not host, one registered twice or not at
    all, or a command stream served in part (its other kinds' commands would be refused)."""
    hosted = {k.name: k for k in kinds.hosted_by(service)}
    registered = [h.kind.name for h in handlers]
    served = set(hosted) if chosen is None else chosen
    problems = [f"{n} is not a kind {service} hosts" for n in sorted(set(registered) | served) if n not in hosted]
    problems += [f"{n} is registered twice" for n in sorted({n for n in registered if registered.count(n) > 1})]
    for kind in hosted.values():
        if kind.name not in served:
            continue
        on_stream = {k.name for k in hosted.values() if k.queue == kind.queue}
        if not on_stream <= served:
            problems.append(f"{kind.name} shares its stream with {', '.join(sorted(on_stream - served))}: serve both")
        if kind.name not in registered:
            problems.append(f"no run and undo registered for {kind.name}")
    return problems


class Worker:
    def __init__(
        self,
        service: Service,
        handlers: Sequence[KindHandlers],
        streams: Streams,
        *,
        chosen: set[str] | None = None,
        max_error_chars: int = 2000,
        kinds: StepKinds = KINDS,
    ) -> None:
        problems = serving(service, handlers, chosen, kinds)
        if problems:
            raise ValueError(f"the {service} worker cannot start: {'; '.join(problems)}")
        self.service = service
        self.handlers = [h for h in handlers if chosen is None or h.kind.name in chosen]
        self._by_command = {h.kind.command: h for h in self.handlers}
        self._by_kind = {h.kind.name: h for h in self.handlers}
        self.reply_stream = streams.events(service)
        # Each command stream's two lanes, the express one first.
        self.command_streams = [
            lane
            for q in dict.fromkeys(h.kind.queue for h in self.handlers)
            for lane in streams.lanes(streams.commands(q))
        ]
        self.max_error_chars = max_error_chars
        # One command at a time per lane, whichever of the lane's streams it came from: an
        # express command runs beside a normal one, never behind it.
        self._one_at_a_time = {p: asyncio.Lock() for p in Priority}

    def _error(self, exc: BaseException) -> str:
        return cap_text(str(exc), self.max_error_chars, "error")

    def _handlers_for(self, msg: Any) -> KindHandlers:
        found = self._by_kind.get(msg.kind) if isinstance(msg, st.CompensateStep) else self._by_command.get(type(msg))
        if found is None:
            raise MalformedMessage(f"{self.service} serves no kind for {msg.TYPE}")
        return found

    async def handle(self, env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        msg = env.message
        handlers = self._handlers_for(msg)
        async with self._one_at_a_time[Streams.priority_of(delivery.stream)]:
            if isinstance(msg, st.CompensateStep):
                reply = await self._undo(handlers, msg)
            else:
                reply = await self._run(handlers, msg)
        return [self._reply(delivery, env, reply, telemetry.current_traceparent())]

    async def _run(self, handlers: KindHandlers, msg: Any) -> st.StepMessage:
        kind = handlers.kind.name
        try:
            result: st.StepSucceeded = await handlers.run(msg)
            return result
        except StepError as exc:
            log.warning("%s failed for saga %s: %s", msg.TYPE, msg.saga_id, exc)
            error, error_kind, retryable = self._error(exc), exc.kind, exc.retryable
        except StepUndone as exc:  # compensated while it ran: the saga no longer waits for it
            log.info("%s for saga %s stopped: %s", msg.TYPE, msg.saga_id, exc)
            error, error_kind, retryable = self._error(exc), "undone", False
        return st.StepFailed(
            saga_id=msg.saga_id,
            step=msg.step,
            kind=kind,
            attempt=msg.attempt,
            error_kind=error_kind,
            error=error,
            retryable=retryable,
        )

    async def _undo(self, handlers: KindHandlers, msg: st.CompensateStep) -> st.StepMessage:
        ids = {"saga_id": msg.saga_id, "step": msg.step, "kind": msg.kind, "attempt": msg.attempt}
        try:
            await handlers.undo(msg)
        except StepError as exc:
            return st.CompensationFailed(**ids, error=self._error(exc))
        return st.StepCompensated(**ids)

    def dead_lettered(self, delivery: Delivery, dead_letter_id: str) -> Sequence[Outgoing]:
        """The bus dead-lettered a command (it kept failing, or it could not be decoded):
        reply with the step's failure now, naming the dead letter, so that the saga does not
        wait for the step's timeout. A command that could not be decoded names no step."""
        env = delivery.envelope
        if env is None:
            return ()
        msg = env.message
        # The dead letter's id first: a long error is cut at its end.
        dead_letters = Streams.dead_letters(delivery.stream)
        error = self._error(RuntimeError(f"dead letter {dead_letter_id} in {dead_letters}: {delivery.error}"))
        reply: st.StepMessage
        if isinstance(msg, st.CompensateStep) and msg.kind in self._by_kind:
            reply = st.CompensationFailed(
                saga_id=msg.saga_id, step=msg.step, kind=msg.kind, attempt=msg.attempt, error=error
            )
        elif isinstance(msg, st.StepCommand) and type(msg) in self._by_command:
            reply = st.StepFailed(
                saga_id=msg.saga_id,
                step=msg.step,
                kind=self._by_command[type(msg)].kind.name,
                attempt=msg.attempt,
                error_kind="dead_lettered",
                error=error,
            )
        else:
            return ()
        return [self._reply(delivery, env, reply, env.traceparent)]

    @staticmethod
    def deadline(delivery: Delivery) -> float | None:
        """When the saga stops waiting for this command (its timeout): the bus waits out an
        outage until then (``chain.ErrorPolicy``)."""
        msg = delivery.envelope.message if delivery.envelope is not None else None
        due = getattr(msg, "deadline", None)
        return due.timestamp() if isinstance(due, dt.datetime) else None

    def outlasted(self, delivery: Delivery, reason: str) -> Sequence[Outgoing]:
        """An outage outlasted the command's deadline: the step failed on it, retryable, and
        the saga's retry policy decides, its record naming the outage."""
        env = delivery.envelope
        msg = env.message if env is not None else None
        error = self._error(RuntimeError(reason))
        reply: st.StepMessage
        if env is None or msg is None:
            return ()
        if isinstance(msg, st.CompensateStep):
            ids = {"saga_id": msg.saga_id, "step": msg.step, "kind": msg.kind, "attempt": msg.attempt}
            reply = st.CompensationFailed(**ids, error=f"outage: {error}")
        elif isinstance(msg, st.StepCommand) and type(msg) in self._by_command:
            kind = self._by_command[type(msg)].kind.name
            reply = st.StepFailed(
                saga_id=msg.saga_id,
                step=msg.step,
                kind=kind,
                attempt=msg.attempt,
                error_kind="outage",
                error=error,
                retryable=True,
            )
        else:
            return ()
        return [self._reply(delivery, env, reply, env.traceparent)]

    def _reply(self, delivery: Delivery, env: Envelope, reply: st.StepMessage, traceparent: str) -> Outgoing:
        """The reply, on the lane of the reply stream that the command came in on."""
        return Outgoing(
            Streams.lane(self.reply_stream, Streams.priority_of(delivery.stream)),
            envelope_for(
                reply,
                correlation_id=env.correlation_id,
                causation_id=env.message_id,
                message_id=derived_message_id(env.message_id, reply.TYPE),
                traceparent=traceparent,
            ),
        )


MakeHandlers = Callable[[ServiceContext], Awaitable[Sequence[KindHandlers]]]


def run_worker(service: Service, make_handlers: MakeHandlers) -> None:
    """Entry point of a worker service: the kinds it serves (``ALPHASAGA_WORKER_KINDS``),
    one command at a time per lane and process (steps are long; run more processes to
    scale), with the idempotency guard on."""

    async def setup(ctx: ServiceContext) -> None:
        try:
            worker = Worker(
                service,
                await make_handlers(ctx),
                ctx.settings.streams,
                chosen=WorkerSettings().chosen(),
                max_error_chars=ctx.settings.max_error_chars,
            )
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        log.info("serving %s on %s", ", ".join(h.kind.name for h in worker.handlers), ", ".join(worker.command_streams))
        for stream in worker.command_streams:
            ctx.bus.subscribe(
                stream,
                worker.handle,
                dedupe=True,
                max_records=1,
                on_dead_letter=worker.dead_lettered,
                deadline=worker.deadline,
                on_outlasted=worker.outlasted,
            )

    run_service(service.value, setup)
