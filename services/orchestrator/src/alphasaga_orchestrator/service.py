"""The orchestrator's handlers. For each incoming message or due timer: load the saga,
decide, and commit the new events, the outgoing messages (outbox), the inbox record and
the saga's timer atomically, in one round trip (``COMMIT_SQL``).

A whole read from a stream is decided at once and committed in one call (``prepare``):
with many sagas in flight that is what keeps the round trips per saga low. When the
batch cannot commit (a duplicate, or another orchestrator moved a saga on), nothing of
it is written and every message is handled on its own, which is always correct.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from alphasaga_contracts import WORKERS, Service
from alphasaga_shared import metrics, telemetry
from alphasaga_shared.eventstore import EventStore, JsonText, NewEvent
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
# After a conflicting commit (another orchestrator moved a saga on, or a duplicate), cached
# sagas are checked against the store for this long; see Orchestrator._load.
SHARED_WINDOW_S = 10.0


# For the pool small commits run on. With a custom plan per call (the default, because
# the arrays' real lengths make every custom plan look cheaper than a generic one), the
# planning costs as much as the execution: with one saga in flight, about 0.7 ms of a
# 3 ms commit here. For a batch of many sagas a plan made for its real sizes pays for
# itself (a generic one was 3% slower for a hundred), so those stay on the main pool.
COMMIT_POOL_SETTINGS = {"plan_cache_mode": "force_generic_plan"}
GENERIC_PLAN_MAX_SAGAS = 8


class SagaMovedOn(Exception):
    """A saga decided on is no longer at the version its decision started from."""


# A message already in the inbox (its key), a saga that moved on since it was read (the
# version guard below, or events' (stream_id, version) key): decide again on fresh state.
_CONFLICTS = (asyncpg.SerializationError, asyncpg.UniqueViolationError, SagaMovedOn)

# Everything a set of decisions writes, as one statement: one round trip and one implicit
# transaction, all or nothing. Data-modifying CTEs all run to completion whether or not
# the final SELECT reads them (and they see one snapshot, taken after every message
# decided on was received).
#
# `guard` compares every saga decided on, with or without new events, to the version
# its decision started from. A decision that writes no event (a late or duplicate reply)
# must be checked as well: taken on an old state, it could record as handled a reply
# that the saga's current state needs. When a saga moved on, nothing is written and the
# statement returns false. A commit racing ours to the same saga after our snapshot meets
# the events' (stream_id, version) key. Outbox streams (expected NULL) go after whatever
# they hold. The NOTIFY wakes a relay in any process; it is delivered at commit. (This
# replaced a PL/pgSQL function doing the same in separate statements, 0.3 ms slower per
# commit; migration 0006.)
COMMIT_SQL = """
WITH guard AS (
    SELECT coalesce(bool_and(
        coalesce((SELECT max(e.version) FROM events e WHERE e.stream_id = g.stream_id), 0) = g.expected), true) AS ok
    FROM unnest($22::text[], $23::int[]) AS g(stream_id, expected)
), inbox_rows AS (
    INSERT INTO inbox (consumer, message_id)
    SELECT $1, m FROM unnest($2::text[]) AS m WHERE (SELECT ok FROM guard)
), event_rows AS (
    INSERT INTO events (stream_id, version, event_id, type, data, metadata)
    SELECT n.stream_id,
           coalesce(n.expected, (SELECT coalesce(max(e.version), 0) FROM events e WHERE e.stream_id = n.stream_id))
               + n.ord,
           n.event_id, n.type, n.data, n.metadata
    FROM unnest($3::text[], $4::int[], $5::int[], $6::uuid[], $7::text[], $8::jsonb[], $9::jsonb[])
        AS n(stream_id, expected, ord, event_id, type, data, metadata)
    WHERE (SELECT ok FROM guard)
    ORDER BY n.stream_id, n.ord
), timer_rows AS (
    INSERT INTO saga_timers (saga_id, due_at, kind, step, attempt, version)
    SELECT * FROM unnest($10::uuid[], $11::timestamptz[], $12::text[], $13::text[], $14::int[], $15::int[])
    WHERE (SELECT ok FROM guard)
    ON CONFLICT (saga_id) DO UPDATE SET due_at = excluded.due_at, kind = excluded.kind,
        step = excluded.step, attempt = excluded.attempt, version = excluded.version
), cleared_timers AS (
    DELETE FROM saga_timers WHERE saga_id = ANY ($16::uuid[]) AND (SELECT ok FROM guard)
), snapshot_rows AS (
    INSERT INTO snapshots (stream_id, version, type, state)
    SELECT * FROM unnest($17::text[], $18::int[], $19::text[], $20::jsonb[])
    WHERE (SELECT ok FROM guard)
    ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, type = excluded.type,
        state = excluded.state, recorded_at = now()
    WHERE snapshots.version < excluded.version
)
SELECT g.ok, (SELECT count(*) FROM (SELECT pg_notify('alphasaga_outbox_' || current_schema(), '')
                                   WHERE $21::boolean AND g.ok) AS notified)
FROM guard g
"""


@dataclass
class _Touched:
    """A saga as it was loaded, and as the decisions of this plan left it."""

    saga: Saga | None
    version: int
    state: str | None
    deadline: dict[str, Any] | None


@dataclass
class Plan:
    """Everything a set of decisions will commit, as the arrays COMMIT_SQL takes."""

    message_ids: list[str] = field(default_factory=list)
    events: list[tuple[str, int | None, int, NewEvent]] = field(default_factory=list)
    touched: dict[uuid.UUID, _Touched] = field(default_factory=dict)
    outbox: list[NewEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _next_ord: dict[str, int] = field(default_factory=dict)

    def add(self, stream: str, expected: int | None, rows: Sequence[NewEvent]) -> None:
        for row in rows:
            ordinal = self._next_ord.get(stream, 0) + 1
            self._next_ord[stream] = ordinal
            self.events.append((stream, expected, ordinal, row))


class Orchestrator:
    def __init__(
        self,
        store: EventStore,
        ctx: ServiceContext,
        workflows: WorkflowRegistry = DEFAULT_WORKFLOWS,
        relay: Relay | None = None,
        *,
        snapshot_every: int = 100,
        cache_size: int = 10_000,
        commit_pool: asyncpg.Pool | None = None,
    ) -> None:
        self.store = store
        # Small commits go here (see COMMIT_POOL_SETTINGS); without it, to the main pool.
        self.commit_pool = commit_pool or store.pool
        self.repo = SagaRepository(store, snapshot_every=snapshot_every)
        self.streams = ctx.settings.streams
        self.workflows = workflows
        self.relay = relay
        self._done_in_batch: set[str] = set()
        # Sagas as this process last committed them, most recently used last. A saga is
        # taken out while it is being decided on and put back only after its commit
        # succeeded, so what is here was true at some point; if another orchestrator has
        # moved it on since, the commit meets a newer version, fails, and the saga is
        # decided again from the store.
        self._sagas: OrderedDict[uuid.UUID, Saga] = OrderedDict()
        self._last_conflict = -SHARED_WINDOW_S
        self.cache_size = cache_size

    # --- message handling ---------------------------------------------------------------

    async def prepare(self, deliveries: Sequence[Delivery]) -> None:
        """Decide on a whole batch and commit it at once; see the module docstring."""
        items = [
            (saga_id_for(d.envelope.message, d.envelope.message_id), d.envelope)
            for d in deliveries
            if d.envelope is not None
        ]
        if len(items) < 2:
            return  # one message: the normal path is the same work
        try:
            committed = await self._decide_and_commit(items)
        except _CONFLICTS as exc:
            self._last_conflict = time.monotonic()
            log.debug("batch of %d falls back to one by one: %s", len(items), exc)
            return
        self._done_in_batch.update(committed)

    async def handle(self, env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        if env.message_id in self._done_in_batch:
            self._done_in_batch.discard(env.message_id)
            return ()
        await self.apply(saga_id_for(env.message, env.message_id), env)
        return ()

    async def apply(self, saga_id: uuid.UUID, incoming: Incoming) -> None:
        """Decide on one input and commit it once; decide again on conflict."""
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                # Duplicates are rare and the commit refuses them anyway: look in the inbox
                # first only when a commit has failed.
                await self._decide_and_commit([(saga_id, incoming)], check_inbox=attempt > 0)
                return
            except _CONFLICTS:
                self._last_conflict = time.monotonic()
                continue  # a duplicate, or another orchestrator decided first: look again
        raise RuntimeError(f"saga {saga_id}: gave up after {MAX_CONFLICT_RETRIES} conflicting commits")

    async def _decide_and_commit(
        self, items: Sequence[tuple[uuid.UUID, Incoming]], *, check_inbox: bool = True
    ) -> set[str]:
        """Decide on ``items`` in order and commit them together. Returns the ids of the
        inputs decided on (those already in the inbox are skipped)."""
        seen: set[str] = set()
        if check_inbox:
            ids = [incoming.message_id for _, incoming in items]
            async with self.store.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT message_id FROM inbox WHERE consumer = $1 AND message_id = ANY($2::text[])", INBOX, ids
                )
            seen = {r["message_id"] for r in rows}
        fresh: list[tuple[uuid.UUID, Incoming]] = []
        for saga_id, incoming in items:
            if incoming.message_id in seen:
                log.info("duplicate %s ignored", incoming.message_id)
            else:
                seen.add(incoming.message_id)
                fresh.append((saga_id, incoming))
        if not fresh:
            return set()
        loaded = await self._load(list(dict.fromkeys(s for s, _ in fresh)))
        plan = Plan()
        ctx = Context(
            self.streams, self.workflows, now=dt.datetime.now(dt.UTC), traceparent=telemetry.current_traceparent()
        )
        for saga_id, incoming in fresh:
            self._decide_into(plan, saga_id, loaded, incoming, ctx)
        await self._commit(plan)
        for saga_id, t in plan.touched.items():
            if t.saga is not None and not t.saga.terminal:
                self._remember(saga_id, t.saga)
        if self.relay is not None:
            await self.relay.publish_committed(plan.outbox)
        for note in plan.notes:
            log.info(note)
        for t in plan.touched.values():
            if t.saga is not None and t.saga.state != t.state:
                metrics.SAGAS.labels(t.saga.state).inc()
        return set(plan.message_ids)

    async def _load(self, saga_ids: list[uuid.UUID]) -> dict[uuid.UUID, Saga | None]:
        """The sagas to decide on. Cached ones are trusted without a round trip while no
        other orchestrator has been seen moving sagas on (a stale one then fails its
        commit and is decided again); after such a conflict, for a while, cached ones
        are moved on to what the store holds, in the same one round trip that reads the
        uncached ones, so that with several orchestrators decisions rarely fail."""
        known = {s: saga for s in saga_ids if (saga := self._sagas.pop(s, None)) is not None}
        alone = time.monotonic() - self._last_conflict > SHARED_WINDOW_S
        if len(known) == len(saga_ids) and alone:
            return dict(known)
        return await self.repo.load_many(saga_ids, known)

    def _remember(self, saga_id: uuid.UUID, saga: Saga) -> None:
        self._sagas[saga_id] = saga
        self._sagas.move_to_end(saga_id)
        while len(self._sagas) > self.cache_size:
            self._sagas.popitem(last=False)

    def _decide_into(
        self, plan: Plan, saga_id: uuid.UUID, loaded: dict[uuid.UUID, Saga | None], incoming: Incoming, ctx: Context
    ) -> None:
        if saga_id not in plan.touched:
            saga = loaded.get(saga_id)
            plan.touched[saga_id] = _Touched(
                saga,
                saga.version if saga else 0,
                saga.state if saga else None,
                dict(saga.deadline) if saga is not None and saga.deadline else None,
            )
        touched = plan.touched[saga_id]
        decision = decide(touched.saga, incoming, ctx)
        touched.saga = decision.saga
        plan.message_ids.append(incoming.message_id)
        if decision.note:
            plan.notes.append(f"saga {saga_id}: {decision.note}")
        pending = decision.saga.collect_events() if decision.saga is not None else []
        if pending:
            meta = {"correlation_id": str(saga_id), "causation_id": incoming.message_id, "traceparent": ctx.traceparent}
            plan.add(saga_stream(saga_id), touched.version, self.repo.to_new_events(pending, meta))
        if decision.outgoing:
            rows = outbox_events(decision.outgoing)
            plan.add(outbox_stream(str(saga_id)), None, rows)
            plan.outbox.extend(rows)

    async def _commit(self, plan: Plan) -> None:
        timers: list[tuple[uuid.UUID, dt.datetime, str, str, int, int]] = []
        cleared: list[uuid.UUID] = []
        snapshots: list[tuple[str, int, str, JsonText]] = []
        for saga_id, t in plan.touched.items():
            saga = t.saga
            if saga is None:
                continue
            if saga.deadline != t.deadline or saga.version != t.version:
                dl = saga.deadline
                if dl is None:
                    cleared.append(saga_id)
                else:
                    timers.append(
                        (
                            saga_id,
                            dt.datetime.fromisoformat(dl["due_at"]),
                            dl["kind"],
                            dl["step"],
                            int(dl["attempt"]),
                            saga.version,
                        )
                    )
            if self.repo.due_for_snapshot(t.version, saga.version):
                snapshots.append(self.repo.snapshot_row(saga))
        e = plan.events
        pool = self.commit_pool if len(plan.touched) <= GENERIC_PLAN_MAX_SAGAS else self.store.pool
        async with pool.acquire() as conn:
            current = await conn.fetchval(
                COMMIT_SQL,
                INBOX,
                plan.message_ids,
                [x[0] for x in e],
                [x[1] for x in e],
                [x[2] for x in e],
                [x[3].event_id for x in e],
                [x[3].type for x in e],
                [x[3].data for x in e],
                [x[3].metadata for x in e],
                [t[0] for t in timers],
                [t[1] for t in timers],
                [t[2] for t in timers],
                [t[3] for t in timers],
                [t[4] for t in timers],
                [t[5] for t in timers],
                cleared,
                [s[0] for s in snapshots],
                [s[1] for s in snapshots],
                [s[2] for s in snapshots],
                [s[3] for s in snapshots],
                # The relay here publishes our rows directly; its tail need not be woken.
                bool(plan.outbox) and not (self.relay is not None and self.relay.holding),
                [saga_stream(saga_id) for saga_id in plan.touched],
                [t.version for t in plan.touched.values()],
            )
        if not current:
            raise SagaMovedOn("a saga moved on since it was read; nothing was written")

    # --- timers ---------------------------------------------------------------------------

    async def fire_due_timers(self, limit: int = 200) -> int:
        """Decide on every deadline that is due, including those that fell due while no
        orchestrator ran. Several orchestrators may race: the inbox fires each once."""
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT saga_id, kind, step, attempt FROM saga_timers WHERE due_at <= now() ORDER BY due_at LIMIT $1",
                limit,
            )
        for r in rows:
            timer = TimerFired(r["saga_id"], r["kind"], r["step"], r["attempt"])
            await self.apply(timer.saga_id, timer)
            # Once a timer's id is in the inbox, a row still naming it is obsolete (a race
            # lost to another orchestrator): drop it so that it does not come due again.
            async with self.store.pool.acquire() as conn:
                await conn.execute(
                    "DELETE FROM saga_timers WHERE saga_id = $1 AND kind = $2 AND step = $3 AND attempt = $4"
                    " AND EXISTS (SELECT 1 FROM inbox WHERE consumer = $5 AND message_id = $6)",
                    timer.saga_id,
                    timer.kind,
                    timer.step,
                    timer.attempt,
                    INBOX,
                    timer.message_id,
                )
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
