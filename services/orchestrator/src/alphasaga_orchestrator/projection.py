"""The ``saga_summaries`` projection: one row per saga, for ``alphasaga status`` and
``alphasaga list``.

The projector tails the global log in commit order (``EventStore.read_all``), folds each
saga a batch touched from its whole stream, and upserts the summaries and its own
position in one transaction. Because a row is a pure function of the saga's stream,
the table can be emptied and rebuilt from the log at any time (``rebuild``), folding a
saga twice is harmless, and an upsert never replaces a row folded from more events.
Several projectors may run (the orchestrator's, a CLI catching up): an advisory lock
lets one at a time take a batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from alphasaga_shared.eventstore import Conn, EventStore, JsonText, RecordedEvent

from .repository import SagaRepository, saga_stream
from .saga import Saga, state_json

log = logging.getLogger(__name__)

PROJECTION = "projection:saga_summaries"
_SAGA_PREFIX = "saga-"

_COLUMNS = (
    "saga_id, state, workflow, workflow_version, current_step, attempt, steps_completed, failure,"
    " verdict, metrics, version, started_at, updated_at, saga_state"
)

_UPSERT = f"""
INSERT INTO saga_summaries ({_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (saga_id) DO UPDATE SET
    state = excluded.state, workflow = excluded.workflow, workflow_version = excluded.workflow_version,
    current_step = excluded.current_step, attempt = excluded.attempt,
    steps_completed = excluded.steps_completed, failure = excluded.failure, verdict = excluded.verdict,
    metrics = excluded.metrics, version = excluded.version, started_at = excluded.started_at,
    updated_at = excluded.updated_at, saga_state = excluded.saga_state
WHERE saga_summaries.version <= excluded.version
"""

_STREAMS = """
SELECT global_position, stream_id, version, event_id, type, data, metadata,
       transaction_id::text::bigint AS transaction_id, recorded_at
FROM events WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version
"""


@dataclass(frozen=True, slots=True)
class SagaSummary:
    saga_id: uuid.UUID
    state: str
    workflow: str
    workflow_version: int
    current_step: str | None
    attempt: int
    steps_completed: list[str]
    failure: str | None
    verdict: dict[str, Any] | None
    metrics: dict[str, Any] | None
    version: int
    started_at: dt.datetime
    updated_at: dt.datetime
    saga_state: dict[str, Any] | JsonText  # JsonText when just folded: stored without re-encoding

    def as_json(self, *, with_state: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "saga_id": str(self.saga_id),
            "state": self.state,
            "workflow": self.workflow,
            "workflow_version": self.workflow_version,
            "current_step": self.current_step,
            "attempt": self.attempt,
            "steps_completed": list(self.steps_completed),
            "failure": self.failure,
            "verdict": self.verdict,
            "metrics": self.metrics,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
        if with_state:
            out["saga_state"] = json.loads(self.saga_state) if isinstance(self.saga_state, str) else self.saga_state
        return out

    def args(self) -> tuple[Any, ...]:
        return (
            self.saga_id,
            self.state,
            self.workflow,
            self.workflow_version,
            self.current_step,
            self.attempt,
            self.steps_completed,
            self.failure,
            self.verdict,
            self.metrics,
            self.version,
            self.started_at,
            self.updated_at,
            self.saga_state,
        )


def summarise(saga: Saga, rows: Sequence[RecordedEvent]) -> SagaSummary:
    """The summary of ``saga`` folded from ``rows`` (its whole stream, oldest first)."""
    return summary_of(saga, rows[0].recorded_at, rows[-1].recorded_at)


def summary_of(saga: Saga, started_at: dt.datetime, updated_at: dt.datetime) -> SagaSummary:
    """The summary of ``saga``, first recorded at ``started_at``, last at ``updated_at``.

    Read with ``getattr``: the aggregate gains attributes over time, and a summary of an
    older saga must still be written."""
    context: dict[str, Any] = getattr(saga, "context", None) or {}
    verdict = context.get("verdict")
    metrics = context.get("metrics")
    current = getattr(saga, "current_step", None) or getattr(saga, "compensating_step", None)
    return SagaSummary(
        saga_id=saga.id,
        state=str(getattr(saga, "state", "UNKNOWN")),
        workflow=str(getattr(saga, "workflow", "")),
        workflow_version=int(getattr(saga, "workflow_version", 0)),
        current_step=current,
        attempt=int(getattr(saga, "current_attempt", 0) or 0),
        steps_completed=[str(s) for s in getattr(saga, "completed", [])],
        failure=getattr(saga, "failure", None),
        verdict=verdict if isinstance(verdict, dict) else None,
        metrics=metrics if isinstance(metrics, dict) else None,
        version=saga.version,
        started_at=started_at,
        updated_at=updated_at,
        saga_state=JsonText(state_json(saga)),
    )


def saga_id_of_stream(stream_id: str) -> uuid.UUID | None:
    if not stream_id.startswith(_SAGA_PREFIX):
        return None
    try:
        return uuid.UUID(stream_id.removeprefix(_SAGA_PREFIX))
    except ValueError:
        return None


def _record(r: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(**dict(r))


def _from_row(r: asyncpg.Record) -> SagaSummary:
    return SagaSummary(
        saga_id=r["saga_id"],
        state=r["state"],
        workflow=r["workflow"],
        workflow_version=r["workflow_version"],
        current_step=r["current_step"],
        attempt=r["attempt"],
        steps_completed=list(r["steps_completed"]),
        failure=r["failure"],
        verdict=r["verdict"],
        metrics=r["metrics"],
        version=r["version"],
        started_at=r["started_at"],
        updated_at=r["updated_at"],
        saga_state=r["saga_state"],
    )


CACHE_SIZE = 20_000


class SagaProjector:
    """Keeps ``saga_summaries`` up to date with the log."""

    def __init__(self, store: EventStore, *, batch: int = 500, poll_ms: int = 200) -> None:
        self.store = store
        self.repo = SagaRepository(store)
        self.batch = batch
        self.poll_s = poll_ms / 1000
        # Advisory locks are per database; schemas (tests, tenants) must not share one.
        self._lock_key = f"alphasaga-projection:{store.schema}"
        # The aggregates this projector folded last, with their first and last times: a
        # batch's rows are exactly a saga's new events, so most sagas are folded forward
        # instead of from scratch. A gap in versions (another projector, a failed
        # transaction) falls back to a full fold.
        self._cache: OrderedDict[uuid.UUID, tuple[Saga, dt.datetime, dt.datetime]] = OrderedDict()

    async def run_once(self) -> int:
        """Project one batch of the log; returns how many events it read."""
        async with self.store.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock_key)
            # Loaded after the lock: a projector that just committed has moved it on.
            position = await self.store.load_position(PROJECTION)
            rows = await self.store.read_all(position, limit=self.batch, prefix=_SAGA_PREFIX, data_as_text=True)
            if not rows:
                return 0
            new_rows: dict[uuid.UUID, list[RecordedEvent]] = {}
            for r in rows:
                saga_id = saga_id_of_stream(r.stream_id)
                if saga_id is not None:
                    new_rows.setdefault(saga_id, []).append(r)
            if new_rows:
                await self._project(conn, new_rows)
            await self.store.save_position(PROJECTION, rows[-1].position, conn=conn)
        return len(rows)

    async def catch_up(self) -> int:
        """Project until the log is read to its committed end; returns the events read."""
        total = 0
        while True:
            n = await self.run_once()
            total += n
            if n < self.batch:
                return total

    async def refresh(self, saga_id: uuid.UUID) -> SagaSummary | None:
        """Fold one saga from its stream now and upsert it (the freshest possible row, even
        while an older transaction holds the log reader back). Raises when its events
        cannot be folded."""
        rows = await self.store.read_stream(saga_stream(saga_id))
        if not rows:
            return None
        saga = self.repo.fold(saga_id, rows)
        assert saga is not None
        summary = summarise(saga, rows)
        async with self.store.transaction() as conn:
            await conn.execute(_UPSERT, *summary.args())
        return summary

    def _fold_forward(
        self, saga_id: uuid.UUID, rows: list[RecordedEvent]
    ) -> tuple[Saga, dt.datetime, dt.datetime] | None:
        """The cached aggregate moved on by ``rows``; None when it must be folded afresh.
        A full fold reads the saga's whole stream, so the cache may already be past the
        rows of a later batch: nothing to do then."""
        cached = self._cache.pop(saga_id, None)
        if cached is None:
            if [r.version for r in rows] != list(range(1, len(rows) + 1)):
                return None
            # A saga whose whole stream so far is in this batch (a new one): no need to read it.
            try:
                saga = self.repo.fold(saga_id, rows)
            except Exception:  # let the full fold report it
                return None
            assert saga is not None
            self._remember(saga_id, saga, rows[0].recorded_at, rows[-1].recorded_at)
            return saga, rows[0].recorded_at, rows[-1].recorded_at
        saga, started_at, updated_at = cached
        new = [r for r in rows if r.version > saga.version]
        if new and new[0].version != saga.version + 1:
            return None
        try:
            for row in new:
                saga = self.repo.to_domain_event(saga_id, row).mutate(saga)
        except Exception:  # let the full fold report it
            return None
        if new:
            updated_at = new[-1].recorded_at
        self._remember(saga_id, saga, started_at, updated_at)
        return saga, started_at, updated_at

    def _remember(self, saga_id: uuid.UUID, saga: Saga, started_at: dt.datetime, updated_at: dt.datetime) -> None:
        self._cache[saga_id] = (saga, started_at, updated_at)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def rebuild(self) -> int:
        """Empty the table, forget the position and fold the whole log again; returns the
        number of sagas in the rebuilt table."""
        async with self.store.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock_key)
            await conn.execute("DELETE FROM saga_summaries")
            await conn.execute("DELETE FROM subscription_positions WHERE name = $1", PROJECTION)
        self._cache.clear()
        await self.catch_up()
        async with self.store.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM saga_summaries"))

    async def run(self) -> None:
        """Project forever (a background task of the orchestrator)."""
        log.info("projecting saga summaries")
        while True:
            try:
                await self.catch_up()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("projection pass failed, retrying: %s", exc)
                await asyncio.sleep(1)
            await asyncio.sleep(self.poll_s)

    async def _project(self, conn: Conn, new_rows: dict[uuid.UUID, list[RecordedEvent]]) -> None:
        summaries: list[tuple[Any, ...]] = []
        missed: list[uuid.UUID] = []
        for saga_id, rows in new_rows.items():
            folded = self._fold_forward(saga_id, rows)
            if folded is None:
                missed.append(saga_id)
            else:
                summaries.append(summary_of(*folded).args())
        if missed:
            records = await conn.fetch(_STREAMS, [saga_stream(s) for s in missed])
            by_saga: dict[uuid.UUID, list[RecordedEvent]] = {}
            for r in records:
                row = _record(r)
                owner = saga_id_of_stream(row.stream_id)
                assert owner is not None
                by_saga.setdefault(owner, []).append(row)
            for saga_id, rows in by_saga.items():
                try:
                    saga = self.repo.fold(saga_id, rows)
                except Exception as exc:  # one unreadable saga must not stop the projection
                    log.error("saga %s cannot be folded, left out of saga_summaries: %s", saga_id, exc)
                    continue
                if saga is not None:
                    self._remember(saga_id, saga, rows[0].recorded_at, rows[-1].recorded_at)
                    summaries.append(summarise(saga, rows).args())
        if summaries:
            await conn.executemany(_UPSERT, summaries)


async def load_summary(store: EventStore, saga_id: uuid.UUID) -> SagaSummary | None:
    async with store.pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM saga_summaries WHERE saga_id = $1", saga_id)
    return None if row is None else _from_row(row)


async def list_summaries(
    store: EventStore, *, state: str | None = None, since: dt.datetime | None = None, limit: int | None = None
) -> list[SagaSummary]:
    """Newest first; ``since`` filters on the start time."""
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM saga_summaries"
            " WHERE ($1::text IS NULL OR state = $1) AND ($2::timestamptz IS NULL OR started_at >= $2)"
            " ORDER BY started_at DESC, saga_id LIMIT $3",
            state,
            since,
            limit,
        )
    return [_from_row(r) for r in rows]


def main() -> None:
    """``python -m alphasaga_orchestrator.projection``: the projector alone, with
    ``ALPHASAGA_RUN_PROJECTOR=false`` on the orchestrators (it then takes no CPU from them)."""
    from alphasaga_shared.runner import ServiceContext, run_service

    async def setup(ctx: ServiceContext) -> None:
        ctx.background.append(SagaProjector(ctx.store).run)

    run_service("projector", setup)


if __name__ == "__main__":
    main()
