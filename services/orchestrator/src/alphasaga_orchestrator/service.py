"""The orchestrator's message handler: load the saga, decide, and commit the new events,
the outgoing messages (outbox) and the inbox record in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alphasaga_contracts import WORKERS, Service
from alphasaga_shared import metrics, telemetry
from alphasaga_shared.eventstore import ConcurrencyError, EventStore
from alphasaga_shared.outbox import Relay, outbox_events, outbox_stream
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.wire import Delivery, Envelope, Outgoing

from .decide import Context, decide, saga_id_for
from .repository import SagaRepository, saga_stream
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
    ) -> None:
        self.store = store
        self.repo = SagaRepository(store)
        self.streams = ctx.settings.streams
        self.workflows = workflows
        self.relay = relay

    async def handle(self, env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        saga_id = saga_id_for(env.message, env.message_id)
        ctx = Context(self.streams, self.workflows, traceparent=telemetry.current_traceparent())
        for _ in range(MAX_CONFLICT_RETRIES):
            saga = await self.repo.load(saga_id)
            # The aggregate's version counts its pending events: take it before deciding.
            loaded_version = saga.version if saga is not None else 0
            loaded_state = saga.state if saga is not None else None
            decision = decide(saga, env, ctx)
            pending = decision.saga.collect_events() if decision.saga is not None else []
            try:
                async with self.store.transaction() as conn:
                    if not await self.store.record_inbox(conn, INBOX, env.message_id):
                        log.info("duplicate %s %s ignored", env.type, env.message_id)
                        return ()
                    if pending:
                        meta = {
                            "correlation_id": str(saga_id),
                            "causation_id": env.message_id,
                            "traceparent": ctx.traceparent,
                        }
                        await self.store.append(
                            saga_stream(saga_id),
                            self.repo.to_new_events(pending, meta),
                            expected_version=loaded_version,
                            conn=conn,
                        )
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
            return ()
        raise RuntimeError(f"saga {saga_id}: gave up after {MAX_CONFLICT_RETRIES} conflicting appends")


def subscribed_streams(ctx: ServiceContext) -> list[str]:
    streams = ctx.settings.streams
    return [streams.commands(Service.ORCHESTRATOR), *(streams.events(w) for w in WORKERS)]
