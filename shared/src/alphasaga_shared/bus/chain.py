"""A consumed batch's path through the bus: a chain of small middlewares, each one concern.

Two levels. A *batch* middleware sees a whole read (one XREADGROUP, or one page the
reclaimer claimed) and passes on what is left to handle: the size guard, the decoder, the
idempotency guard, the in-flight marker, the orchestrator's batch handler. The last link
hands each delivery left to a chain of its own, the *delivery* middlewares around the
handler: the error policy, tracing, the handler's timing.

Nothing here talks to a server. What a batch will commit (outputs, done marks, dead
letters, acks) is collected on ``Batch``, and the transport commits it in one round trip
after the chain has run; the idempotency guard asks the transport whether a message was
done before through the function it is given.

FastStream's own ``BaseMiddleware`` wraps one FastStream message, which for us is a whole
read; the reclaimer's pages never pass through it, and per-entry decisions (dead-letter
this one, ack that one) must land in the batch's single commit. So the chain is ours
(docs/decisions/0009).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import metrics, telemetry
from ..outages import OUTAGES, Outages, Outlasted, Span, classify
from ..wire import Delivery, Envelope, MalformedMessage, Outgoing, decode, entry_size

log = logging.getLogger("alphasaga_shared.bus")

Handler = Callable[[Envelope, Delivery], Awaitable[Sequence[Outgoing]]]
# Handles a whole batch at once, before the one-by-one handler (the orchestrator decides
# and commits a batch in one transaction). Returns the entry ids it handled; the handler
# gets the others. It produces no outputs of its own: its effects are committed elsewhere.
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[set[str]]]
# An outgoing message as stream entry fields (refused when over the size limit).
Encode = Callable[[Outgoing], dict[str, str]]
# Which of these message ids were handled before (the transport's done marks).
SeenBefore = Callable[[Sequence[str]], Awaitable[Sequence[bool]]]
# Header fields a dead letter of an oversized entry keeps (its body and the rest do not).
OVERSIZED_KEEPS = ("message_id", "correlation_id", "causation_id", "type", "schema")


@dataclass(slots=True)
class BatchOutcome:
    """What one pass over a batch did, for metrics and tests."""

    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    failed: int = 0


@dataclass(slots=True)
class Batch:
    """A read on its way through the chain: the deliveries still to handle, and what the
    batch will commit when the chain is done."""

    deliveries: list[Delivery]
    outputs: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    ack: list[str] = field(default_factory=list)
    dead: list[Delivery] = field(default_factory=list)
    # Message ids handled in this batch, marked done where the idempotency guard is on.
    done: list[str] = field(default_factory=list)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)

    def dead_letter(self, d: Delivery, error: str) -> None:
        d.error = error
        self.dead.append(d)
        self.ack.append(d.entry_id)
        self.outcome.dead_lettered += 1

    def duplicate(self, d: Delivery) -> None:
        self.ack.append(d.entry_id)
        self.outcome.duplicates += 1

    def handled(self, d: Delivery, produced: Sequence[tuple[str, dict[str, str]]] = ()) -> None:
        self.outputs.extend(produced)
        self.ack.append(d.entry_id)
        if d.envelope is not None:
            self.done.append(d.envelope.message_id)
        self.outcome.processed += 1

    def failed(self, d: Delivery, error: str) -> None:
        """Left pending, unacked: the reclaimer delivers it again."""
        d.error = error
        self.outcome.failed += 1


NextBatch = Callable[[Batch], Awaitable[None]]
NextDelivery = Callable[[Batch, Delivery], Awaitable[None]]


class BatchMiddleware(Protocol):
    async def __call__(self, batch: Batch, call_next: NextBatch) -> None: ...


class DeliveryMiddleware(Protocol):
    async def __call__(self, batch: Batch, d: Delivery, call_next: NextDelivery) -> None: ...


def chain(
    middlewares: Sequence[BatchMiddleware],
    delivery: Sequence[DeliveryMiddleware],
    handler: Handler,
    encode: Encode,
) -> NextBatch:
    """The batch middlewares in order, then each delivery through the delivery middlewares
    in order, then ``handler``, whose outgoing messages ``encode`` turns into entries."""
    step: NextDelivery = functools.partial(_call_handler, handler, encode)
    for dm in reversed(delivery):
        step = functools.partial(_delivery_link, dm, step)
    last: NextBatch = functools.partial(_one_by_one, step)
    for bm in reversed(middlewares):
        last = functools.partial(_batch_link, bm, last)
    return last


async def _batch_link(mw: BatchMiddleware, call_next: NextBatch, batch: Batch) -> None:
    await mw(batch, call_next)


async def _delivery_link(mw: DeliveryMiddleware, call_next: NextDelivery, batch: Batch, d: Delivery) -> None:
    await mw(batch, d, call_next)


async def _one_by_one(step: NextDelivery, batch: Batch) -> None:
    for d in batch.deliveries:
        await step(batch, d)


async def _call_handler(handler: Handler, encode: Encode, batch: Batch, d: Delivery) -> None:
    batch.handled(d, [(out.stream, encode(out)) for out in await handler(_envelope(d), d)])


# --- batch middlewares ---------------------------------------------------------------


class SizeGuard:
    """Dead-letters an entry over the size limit at once, keeping only its headers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def __call__(self, batch: Batch, call_next: NextBatch) -> None:
        keep: list[Delivery] = []
        for d in batch.deliveries:
            size = entry_size(d.fields)
            if size > self.limit:
                d.fields = {k: v[:200] for k, v in d.fields.items() if k in OVERSIZED_KEEPS}
                batch.dead_letter(d, f"oversized: an entry of {size:,} bytes is over the {self.limit:,}-byte limit")
            else:
                keep.append(d)
        batch.deliveries = keep
        await call_next(batch)


async def decode_entries(batch: Batch, call_next: NextBatch) -> None:
    """Turns entries into contract messages; one that cannot be is dead-lettered at once."""
    keep: list[Delivery] = []
    for d in batch.deliveries:
        try:
            d.envelope = decode(d.fields)
        except MalformedMessage as exc:
            batch.dead_letter(d, f"malformed: {exc}")
        else:
            keep.append(d)
    batch.deliveries = keep
    await call_next(batch)


# Why the subscriber does not take this decoded message from its stream, or None.
Refusal = Callable[[Delivery], str | None]


class Admit:
    """Dead-letters at once what the subscriber does not take from this stream. Redis's ACL
    says who may add to a stream, not what they add (docs/security.md): the reader says
    which messages belong there."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal

    async def __call__(self, batch: Batch, call_next: NextBatch) -> None:
        keep: list[Delivery] = []
        for d in batch.deliveries:
            why = self.refusal(d)
            if why is None:
                keep.append(d)
            else:
                batch.dead_letter(d, f"refused: {why}")
        batch.deliveries = keep
        await call_next(batch)


class Dedupe:
    """The idempotency guard, for handlers whose effects are their outgoing messages: a
    message handled before (or twice in one batch) is acked, not handled again. What is
    handled now is marked done, committed with its outputs and ack."""

    def __init__(self, seen_before: SeenBefore) -> None:
        self.seen_before = seen_before

    async def __call__(self, batch: Batch, call_next: NextBatch) -> None:
        if batch.deliveries:
            ids = [_envelope(d).message_id for d in batch.deliveries]
            seen = await self.seen_before(ids)
            fresh: list[Delivery] = []
            in_batch: set[str] = set()
            for d, message_id, before in zip(batch.deliveries, ids, seen, strict=True):
                if before or message_id in in_batch:
                    batch.duplicate(d)
                else:
                    in_batch.add(message_id)
                    fresh.append(d)
            batch.deliveries = fresh
        await call_next(batch)


class InFlight:
    """Keeps the entries being worked on in ``working``, for the heartbeat that keeps them
    claimed by this consumer while a handler runs."""

    def __init__(self, working: set[str]) -> None:
        self.working = working

    async def __call__(self, batch: Batch, call_next: NextBatch) -> None:
        ids = {d.entry_id for d in batch.deliveries}
        self.working.update(ids)
        try:
            await call_next(batch)
        finally:
            self.working.difference_update(ids)


class BatchFirst:
    """Offers the whole batch to a handler that decides and commits it at once; what it
    did not handle (or all of it, when it fails) goes on one by one."""

    def __init__(self, handler: BatchHandler, stream: str) -> None:
        self.handler = handler
        self.stream = stream

    async def __call__(self, batch: Batch, call_next: NextBatch) -> None:
        if batch.deliveries:
            try:
                handled = await self.handler(batch.deliveries)
            except Exception as exc:  # the batch path failed: every message is still handled below
                if classify(exc) is None:
                    log.exception("batch handler failed on %s; handling one by one", self.stream)
                else:  # the error policy holds each message until the store is back
                    log.info("batch handler met an outage on %s; handling one by one", self.stream)
                handled = set()
            rest: list[Delivery] = []
            for d in batch.deliveries:
                if d.entry_id in handled:
                    batch.handled(d)
                else:
                    rest.append(d)
            batch.deliveries = rest
        await call_next(batch)


# --- delivery middlewares ------------------------------------------------------------


class HeldBoard(Protocol):
    """Where messages held through an outage are shown (``alphasaga status``)."""

    async def show(self, d: Delivery, span: Span) -> None: ...

    async def clear(self, d: Delivery) -> None: ...


# A delivery's deadline in wall-clock seconds (a step command's), or None: no deadline.
Deadline = Callable[[Delivery], float | None]
# What to send for a delivery whose deadline an outage outlasted (acked then).
OutlastedNotice = Callable[[Delivery, str], Sequence[Outgoing]]


@dataclass(frozen=True, slots=True)
class OutagePolicy:
    """How a subscription waits out an outage: until the delivery's ``deadline``, if it
    has one, then ``outlasted`` answers for it; ``board`` shows what is held."""

    outages: Outages = OUTAGES
    deadline: Deadline | None = None
    outlasted: OutlastedNotice | None = None
    board: HeldBoard | None = None


class ErrorPolicy:
    """What a failing handler means for its message: the one place that decides.

    * An outage of a store (``outages.classify``) is no failure of the message: it is held
      here and handled again with backoff, never given back to Redis (so no delivery is
      counted), until the store answers. Past the delivery's deadline the outage's notice
      answers for it and it is acked; without a deadline it is held until the store is back
      (or the process exits at ``ALPHASAGA_OUTAGE_EXIT_S``).
    * A message the handler finds invalid (``MalformedMessage``) will never succeed:
      dead-lettered now.
    * Any other failure leaves it pending for the reclaimer, until its deliveries reach
      the cap."""

    def __init__(self, delivery_cap: int, outage: OutagePolicy | None = None, encode: Encode | None = None) -> None:
        self.delivery_cap = delivery_cap
        self.outage = outage or OutagePolicy()
        if self.outage.outlasted is not None and encode is None:
            raise ValueError("an error policy that answers for outlasted messages needs their encoder")
        self.encode = encode

    async def __call__(self, batch: Batch, d: Delivery, call_next: NextDelivery) -> None:
        policy = self.outage
        shown = False

        async def show(store: str, span: Span) -> None:
            nonlocal shown
            if policy.board is not None:
                shown = True
                await policy.board.show(d, span)

        try:
            deadline = policy.deadline(d) if policy.deadline is not None and policy.outlasted is not None else None
            await policy.outages.ride_out(functools.partial(call_next, batch, d), deadline=deadline, hook=show)
        except Outlasted as exc:
            assert policy.outlasted is not None and self.encode is not None
            log.warning("gave up waiting on %s from %s: %s", d.entry_id, d.stream, exc)
            batch.handled(d, [(out.stream, self.encode(out)) for out in policy.outlasted(d, str(exc))])
        except Exception as exc:  # a handler bug must not stop the service
            self._failed(batch, d, exc)
        finally:
            if shown and policy.board is not None:
                await policy.board.clear(d)

    def _failed(self, batch: Batch, d: Delivery, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MalformedMessage) or d.delivery_count >= self.delivery_cap:
            batch.dead_letter(d, error)
            return
        batch.failed(d, error)
        log.warning(
            "handler failed on %s (delivery %d of %d), will retry: %s",
            d.entry_id,
            d.delivery_count,
            self.delivery_cap,
            error,
            exc_info=exc,
        )


class Traced:
    """The handler's work as a consume span continuing the message's trace (or, untraced,
    the message's traceparent passed on to what the handler sends)."""

    def __init__(self, *, traced: bool) -> None:
        self.traced = traced

    async def __call__(self, batch: Batch, d: Delivery, call_next: NextDelivery) -> None:
        with telemetry.consume_span(_envelope(d), d.stream, traced=self.traced):
            await call_next(batch, d)


class Timed:
    """The handler's time, with the trace as its exemplar (so inside ``Traced``)."""

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram

    async def __call__(self, batch: Batch, d: Delivery, call_next: NextDelivery) -> None:
        started = time.perf_counter()
        try:
            await call_next(batch, d)
        except BaseException:
            self.histogram.observe(time.perf_counter() - started)
            raise
        self.histogram.observe(time.perf_counter() - started, metrics.exemplar())


def _envelope(d: Delivery) -> Envelope:
    if d.envelope is None:
        raise RuntimeError("a delivery reached a middleware after the decoder without its envelope")
    return d.envelope
