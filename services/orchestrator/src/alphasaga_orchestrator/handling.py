"""How the orchestrator handles its inputs: load the sagas, decide, and commit the
decisions in one unit of work (``sagastore.Changes``).

A whole read from a stream is decided at once and committed in one call
(``decide_and_commit_batch``, the bus's batch handler): with many sagas in flight that
keeps the round trips per saga low. When the batch cannot commit (a duplicate, or
another orchestrator moved a saga on), nothing of it is written; it is decided once more
on fresh state without the inputs already handled, and if that fails too every message
is handled on its own (``apply``), which decides again after each conflict.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from alphasaga_contracts import Priority, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts.envelope import BODY, CORRELATION_ID, MESSAGE_ID, TYPE
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS, WorkflowRegistry
from alphasaga_shared import metrics, telemetry
from alphasaga_shared.eventstore import outbox_stream
from alphasaga_shared.outages import OUTAGES, STORES
from alphasaga_shared.outbox import Relay
from alphasaga_shared.outbox_rows import notice, outbox_events
from alphasaga_shared.wire import Delivery, Envelope, Outgoing, cap_text, derived_message_id, envelope_for

from . import observe, tuning
from .decide import Context, Incoming, OutageSeen, TimerFired, decide, saga_id_for
from .plan import Plan
from .repository import SagaRepository
from .storage import Changes, Conflict, SagaStorage

log = logging.getLogger(__name__)


class Orchestrator:
    def __init__(
        self,
        store: SagaStorage,
        repo: SagaRepository,
        streams: Streams,
        workflows: WorkflowRegistry = DEFAULT_WORKFLOWS,
        relay: Relay | None = None,
        *,
        max_error_chars: int = 2000,
    ) -> None:
        self.max_error_chars = max_error_chars
        self.store = store
        self.repo = repo
        self.streams = streams
        self.workflows = workflows
        self.relay = relay
        # A normal lane's batch lets this process's express lane go first between its
        # decisions (the bus's gate, ``alphasaga_shared.bus.lanes``); none in tests.
        self.give_way: Callable[[], Awaitable[None]] | None = None

    # --- the bus's handlers ---

    async def decide_and_commit_batch(self, deliveries: Sequence[Delivery]) -> set[str]:
        """Decide on a whole batch and commit it at once; returns the entry ids handled.
        The bus hands the others, if any, to ``handle`` one by one."""
        items = [(d.entry_id, d.envelope) for d in deliveries if d.envelope is not None]
        if len(items) < 2:
            return set()  # one message: the one-by-one path is the same work
        batch = [(saga_id_for(e.message, e.message_id), e) for _, e in items]
        give_way = Streams.priority_of(deliveries[0].stream) == Priority.NORMAL
        # Like ``apply``: the commit refuses duplicates, so the inbox is read only after a
        # commit failed. The second try decides on fresh state (the conflict puts the
        # repository in its shared mode) without the inputs already handled.
        try:
            await self._decide_and_commit(batch, check_inbox=False, give_way=give_way)
        except Conflict:
            self._conflict_seen()
            try:
                await self._decide_and_commit(batch, check_inbox=True, give_way=give_way)
            except Conflict as exc:
                self._conflict_seen()
                log.debug("batch of %d falls back to one by one: %s", len(items), exc)
                return set()
        return {entry_id for entry_id, _ in items}

    async def handle(self, env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        await self.apply(saga_id_for(env.message, env.message_id), env)
        return ()

    async def apply(self, saga_id: uuid.UUID, incoming: Incoming) -> None:
        """Decide on one input and commit it once; decide again after a conflict."""
        attempts = AsyncRetrying(
            retry=retry_if_exception_type(Conflict),
            stop=stop_after_attempt(tuning.MAX_CONFLICT_RETRIES),
            wait=wait_exponential_jitter(
                multiplier=tuning.CONFLICT_BACKOFF_S,
                jitter=tuning.CONFLICT_BACKOFF_S,
                max=tuning.CONFLICT_BACKOFF_MAX_S,
            ),
            before_sleep=lambda _: self._conflict_seen(),
            reraise=True,
        )
        try:
            async for attempt in attempts:
                with attempt:
                    # Duplicates are rare and the commit refuses them anyway: look in the
                    # inbox first only when a commit has failed.
                    retried = attempt.retry_state.attempt_number > 1
                    await self._decide_and_commit([(saga_id, incoming)], check_inbox=retried)
        except Conflict as exc:
            raise RuntimeError(
                f"saga {saga_id}: gave up after {tuning.MAX_CONFLICT_RETRIES} conflicting commits"
            ) from exc

    def _conflict_seen(self) -> None:
        self.repo.conflict_seen()
        metrics.CONFLICTS.inc()

    async def request_dead_lettered(self, delivery: Delivery, dead_letter_id: str) -> Sequence[Outgoing]:
        """A request the bus dead-lettered (it breaks its contract, or kept failing): when it
        named a saga id, record ``sagas.RequestRejected`` in that id's outbox, as a refused
        decision is, so that the id answers REJECTED with the reason and the relay tells its
        sender on the lifecycle stream. An outage of PostgreSQL is waited out; told at once,
        straight from here, only when it cannot be recorded for another reason."""
        rejection = self._rejection(delivery, dead_letter_id)
        if rejection is None:
            return ()
        saga_id, out = rejection
        rows = outbox_events([out])
        changes = Changes(events=[(outbox_stream(str(saga_id)), None, n, row) for n, row in enumerate(rows, 1)])

        async def record() -> None:
            if self.relay is None:
                changes.notice = notice(rows)
                await self.store.commit(changes)
            else:
                async with self.relay.publishing(rows) as direct:
                    changes.notice = None if direct else notice(rows)
                    await self.store.commit(changes)

        try:
            await OUTAGES.ride_out(record)  # an outage is waited out, not answered for
        except Conflict:
            return ()  # recorded already (its id derives from the dead letter's)
        except Exception as exc:  # the dead letter is safe; say so at once instead
            log.error("the refusal of dead letter %s could not be recorded (%s): told directly", dead_letter_id, exc)
            return [out]
        return ()

    def _rejection(self, delivery: Delivery, dead_letter_id: str) -> tuple[uuid.UUID, Outgoing] | None:
        fields = delivery.fields
        saga_id = refused_saga(fields)
        if saga_id is None:
            return None
        message_id = fields.get(MESSAGE_ID, "")
        message_id = message_id[:200] if message_id.isascii() and message_id.isprintable() else ""
        request_type = fields.get(TYPE, "")[:200]
        try:
            event = sg.RequestRejected(
                saga_id=saga_id,
                request_type=request_type if request_type.isascii() and request_type.isprintable() else "",
                message_id=message_id,
                reason=cap_text(
                    f"dead letter {dead_letter_id} in {self.streams.dead_letters(delivery.stream)}: {delivery.error}",
                    self.max_error_chars,
                    "reason",
                ),
            )
        except ValidationError as exc:  # the notice is a courtesy: the dead letter is kept anyway
            log.warning("no rejection sent for dead letter %s: %s", dead_letter_id, exc)
            return None
        envelope = envelope_for(
            event,
            correlation_id=str(saga_id),
            causation_id=message_id,
            message_id=derived_message_id(message_id or dead_letter_id, event.TYPE),
        )
        return saga_id, Outgoing(self.streams.sagas, envelope)

    # --- deciding and committing ---

    async def _commit(self, plan: Plan, *, notify: bool) -> None:
        started = time.perf_counter()
        with telemetry.span("saga commit"):
            await self.store.commit(plan.changes(notify=notify))
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started, metrics.exemplar())
            metrics.COMMIT_INPUTS.observe(len(plan.message_ids))
        # Cached before the rows are published, so that the replies they bring meet it.
        for t in plan.touched.values():
            if t.saga is not None:
                self.repo.keep(t.saga)

    async def _decide_and_commit(
        self, items: Sequence[tuple[uuid.UUID, Incoming]], *, check_inbox: bool = True, give_way: bool = False
    ) -> None:
        """Decide on ``items`` in order and commit them together (inputs already in the
        inbox are skipped)."""
        seen = await self.store.handled([i.message_id for _, i in items]) if check_inbox else set()
        fresh: list[tuple[uuid.UUID, Incoming]] = []
        for saga_id, incoming in items:
            if incoming.message_id in seen:
                log.info("duplicate %s ignored", incoming.message_id)
            else:
                seen.add(incoming.message_id)
                fresh.append((saga_id, incoming))
        if not fresh:
            return
        loaded = await self.repo.take_many(list(dict.fromkeys(s for s, _ in fresh)))
        ctx = Context(self.workflows, now=dt.datetime.now(dt.UTC), outages=outages_seen())
        if not telemetry.tracing():
            decided = await self._decide_and_commit_plan(fresh, loaded, ctx, give_way)
        else:
            # One span for the decisions and their commit, under the first saga's; a batch
            # links every message it decided on.
            first_id, first = fresh[0]
            first_saga = loaded.get(first_id)
            with telemetry.span(
                "saga decide",
                {"alphasaga.saga_id": str(first_id), "alphasaga.batch_size": len(fresh)},
                parent=observe.root_ids(first_id, first_saga.traceparent if first_saga else _traceparent(first)),
                links=telemetry.links_to([_traceparent(i) for _, i in fresh]),
            ):
                decided = await self._decide_and_commit_plan(fresh, loaded, ctx, give_way)
        observe.record(decided)

    async def _decide_and_commit_plan(
        self,
        fresh: Sequence[tuple[uuid.UUID, Incoming]],
        loaded: Mapping[uuid.UUID, Saga | None],
        ctx: Context,
        give_way: bool = False,
    ) -> list[observe.Decided]:
        plan = Plan(self.repo, self.streams, traced=telemetry.tracing())
        for saga_id, incoming in fresh:
            if give_way and self.give_way is not None:
                await self.give_way()
            before = plan.before(saga_id, loaded.get(saga_id))
            # The incoming message's trace: a new saga keeps it as its parent's, and with
            # tracing off the messages sent on carry it (a saga is one trace either way).
            traceparent = _traceparent(incoming)
            decision = decide(before.saga, incoming, dataclasses.replace(ctx, traceparent=traceparent))
            plan.add(saga_id, incoming, decision, traceparent)
        if give_way and self.give_way is not None:  # nor is its commit started ahead of an express one
            await self.give_way()
        if self.relay is None:
            await self._commit(plan, notify=True)
        else:
            # The relay in this process publishes our rows directly when it holds the lock;
            # otherwise the commit wakes the holder's tail.
            async with self.relay.publishing(plan.outbox) as direct:
                await self._commit(plan, notify=not direct)
        for note in plan.notes:
            log.info(note)
        return plan.decided


def refused_saga(fields: Mapping[str, str]) -> uuid.UUID | None:
    """The saga a request the bus could not handle names: its correlation id, else the
    ``saga_id`` of its body, else, for a start, the saga its message id derives (the wire
    format lets a producer leave the correlation id out)."""
    for candidate in (fields.get(CORRELATION_ID, ""), _body_saga_id(fields.get(BODY, ""))):
        try:
            return uuid.UUID(candidate)
        except ValueError:
            continue
    message_id = fields.get(MESSAGE_ID, "")
    if fields.get(TYPE) == sg.StartResearch.TYPE and message_id:
        return sg.derived_saga_id(message_id)
    return None


def _body_saga_id(body: str) -> str:
    try:
        value = json.loads(body).get("saga_id") if body.startswith("{") else None
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def outages_seen() -> tuple[OutageSeen, ...]:
    """The outages this process waited out lately, for the decisions they explain."""

    def at(t: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, dt.UTC)

    return tuple(
        OutageSeen(STORES.get(s.store, s.store), at(s.since), None if s.until is None else at(s.until))
        for s in OUTAGES.recent()
    )


def _traceparent(incoming: Incoming) -> str:
    return "" if isinstance(incoming, TimerFired) else getattr(incoming, "traceparent", "")
