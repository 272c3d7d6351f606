"""The orchestrator's handlers: load the saga, decide, and commit the new events, the
outgoing messages (outbox), the inbox record and the saga's timer in one transaction.
A timer loop turns due deadlines into decisions through the same path."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Sequence

from alphasaga_contracts import WORKERS, Service
from alphasaga_shared import metrics, telemetry
from alphasaga_shared.eventstore import ConcurrencyError, Conn, EventStore
from alphasaga_shared.outbox import Relay, outbox_events, outbox_stream
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.wire import Delivery, Envelope, Outgoing

from .decide import Context, Incoming, TimerFired, decide, saga_id_for
from .repository import SagaRepository, saga_stream
from .saga import Saga
from .workflow import DEFAULT_WORKFLOWS, WorkflowRegistry

log = logging.getLogger(__name__)

INBOX = "orchestrator"
MAX_CONFLICT_RETRIES = 20


class Orchestrator:
    def __init__(
        self,
        store: EventStore,
        ctx: ServiceContext,
        workflows: WorkflowRegistry = DEFAULT_WORKFLOWS,
        relay: Relay | None = None,
        *,
        snapshot_every: int = 100,
    ) -> None:
        self.store = store
        self.repo = SagaRepository(store, snapshot_every=snapshot_every)
        self.streams = ctx.settings.streams
        self.workflows = workflows
        self.relay = relay

    async def handle(self, env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        await self.apply(saga_id_for(env.message, env.message_id), env)
        return ()

    async def apply(self, saga_id: uuid.UUID, incoming: Incoming) -> None:
        """Decide on ``incoming`` and commit the decision once; decide again on conflict."""
        for _ in range(MAX_CONFLICT_RETRIES):
            ctx = Context(
                self.streams, self.workflows, now=dt.datetime.now(dt.UTC), traceparent=telemetry.current_traceparent()
            )
            saga = await self.repo.load(saga_id)
            # The aggregate's version counts its pending events: take it before deciding.
            loaded_version = saga.version if saga is not None else 0
            loaded_state = saga.state if saga is not None else None
            loaded_deadline = dict(saga.deadline) if saga is not None and saga.deadline else None
            decision = decide(saga, incoming, ctx)
            pending = decision.saga.collect_events() if decision.saga is not None else []
            try:
                async with self.store.transaction() as conn:
                    if not await self.store.record_inbox(conn, INBOX, incoming.message_id):
                        log.info("duplicate %s ignored", incoming.message_id)
                        return
                    if pending:
                        assert decision.saga is not None
                        meta = {
                            "correlation_id": str(saga_id),
                            "causation_id": incoming.message_id,
                            "traceparent": ctx.traceparent,
                        }
                        await self.store.append(
                            saga_stream(saga_id),
                            self.repo.to_new_events(pending, meta),
                            expected_version=loaded_version,
                            conn=conn,
                        )
                        if decision.saga.deadline != loaded_deadline:
                            await self._set_timer(conn, decision.saga)
                        if self.repo.due_for_snapshot(loaded_version, decision.saga.version):
                            await self.repo.save_snapshot(decision.saga, conn)
                    elif isinstance(incoming, TimerFired):
                        # A stale timer row (it should not exist): drop it, or it fires forever.
                        await conn.execute("DELETE FROM saga_timers WHERE saga_id = $1 AND due_at <= now()", saga_id)
                    if decision.outgoing:
                        await self.store.append(
                            outbox_stream(str(saga_id)),
                            outbox_events(decision.outgoing),
                            expected_version=None,
                            conn=conn,
                        )
            except ConcurrencyError:
                continue  # another orchestrator decided first: decide again on the fresh state
            if decision.note:
                log.info("saga %s: %s", saga_id, decision.note)
            if decision.saga is not None and decision.saga.state != loaded_state:
                metrics.SAGAS.labels(decision.saga.state).inc()
            if decision.outgoing and self.relay is not None:
                self.relay.wake()
            return
        raise RuntimeError(f"saga {saga_id}: gave up after {MAX_CONFLICT_RETRIES} conflicting appends")

    @staticmethod
    async def _set_timer(conn: Conn, saga: Saga) -> None:
        """Mirror the saga's pending deadline (or its absence) into the timer index."""
        dl = saga.deadline
        if dl is None:
            await conn.execute("DELETE FROM saga_timers WHERE saga_id = $1", saga.id)
            return
        await conn.execute(
            "INSERT INTO saga_timers (saga_id, due_at, kind, step, attempt, version)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (saga_id) DO UPDATE SET due_at = excluded.due_at, kind = excluded.kind,"
            " step = excluded.step, attempt = excluded.attempt, version = excluded.version",
            saga.id,
            dt.datetime.fromisoformat(dl["due_at"]),
            dl["kind"],
            dl["step"],
            dl["attempt"],
            saga.version,
        )

    async def fire_due_timers(self, limit: int = 200) -> int:
        """Decide on every deadline that is due, including those that fell due while no
        orchestrator ran. Several orchestrators may race: the inbox fires each once."""
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT saga_id, kind, step, attempt FROM saga_timers WHERE due_at <= now() ORDER BY due_at LIMIT $1",
                limit,
            )
        for r in rows:
            await self.apply(r["saga_id"], TimerFired(r["saga_id"], r["kind"], r["step"], r["attempt"]))
        return len(rows)

    async def run_timers(self, poll_s: float = 0.2) -> None:
        while True:
            try:
                fired = await self.fire_due_timers()
            except Exception:
                log.exception("timer pass failed; retrying")
                fired = 0
            if not fired:
                await asyncio.sleep(poll_s)


def subscribed_streams(ctx: ServiceContext) -> list[str]:
    streams = ctx.settings.streams
    return [streams.commands(Service.ORCHESTRATOR), *(streams.events(w) for w in WORKERS)]
