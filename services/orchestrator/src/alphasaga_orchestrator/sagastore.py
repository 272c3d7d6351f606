"""The saga store: every SQL statement over the orchestrator's tables.

- the unit of work that commits a batch of decisions (``commit``): the sagas' new events,
  their outgoing messages (outbox rows), the inbox records, the timers and snapshots, in
  one statement;
- the inbox (message ids already handled), the timers (``saga_timers``), the snapshots;
- the sagas' read side: loading sagas, finding one by a prefix of its id, one saga's
  events, and the ``saga_summaries`` read model that status and list read.

The event log itself is the event store's (``alphasaga_shared.eventstore``); this module
builds on it, and saga stream ids are made here, by ``saga_stream``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import asyncpg

from alphasaga_shared.eventstore import (
    Conn,
    EventStore,
    JsonText,
    RecordedEvent,
    outbox_channel,
    outbox_stream,
)

from .saga import TimerKind
from .storage import (
    SAGA_PREFIX,
    Changes,
    Conflict,
    SagaMovedOn,
    Snapshot,
    StoredRow,
    Timer,
    saga_id_of_stream,
    saga_stream,
)

__all__ = ["SAGA_PREFIX", "SagaMovedOn", "Snapshot", "Timer", "saga_id_of_stream", "saga_stream"]

# The orchestrator's consumer name in the inbox table (shared with other consumers).
INBOX = "orchestrator"
# A PostgreSQL error that means a concurrent change: the port's ``Conflict``.
_RACES = (asyncpg.SerializationError, asyncpg.UniqueViolationError)
CONFLICTS = (Conflict,)


# --- the unit of work -------------------------------------------------------------------

# Everything a set of decisions writes, as one statement: one round trip and one implicit
# transaction, all or nothing. Data-modifying CTEs all run to completion whether or not
# the final SELECT reads them, and they see one snapshot.
#
# `guard` compares every saga decided on, with or without new events, to the version
# its decision started from: a decision that writes no event (a late or duplicate reply)
# taken on an old state could otherwise record as handled a reply the saga still needs.
# When a saga moved on, nothing is written and the statement returns false. A commit
# racing ours after our snapshot meets the events' (stream_id, version) key. Outbox
# streams (expected NULL) go after whatever they hold. The NOTIFY wakes a relay in any
# process; it is delivered at commit.
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
SELECT g.ok, (SELECT count(*) FROM (SELECT pg_notify($24, '') WHERE $21::boolean AND g.ok) AS notified)
FROM guard g
"""


# --- reading sagas ----------------------------------------------------------------------

# Sagas by stream id and the version already known (0: none): for a known one the events
# after it; for another its snapshot, then the events after the snapshot.
_LOAD_MANY = """
WITH wanted AS (SELECT * FROM unnest($1::text[], $2::int[]) AS w(stream_id, after))
SELECT true AS snapshot, s.stream_id, s.version, s.type, s.state::text AS data
FROM snapshots s JOIN wanted w USING (stream_id) WHERE w.after = 0
UNION ALL
SELECT false, e.stream_id, e.version, e.type, e.data::text
FROM wanted w JOIN events e USING (stream_id)
WHERE e.version > CASE WHEN w.after > 0 THEN w.after
                       ELSE coalesce((SELECT s.version FROM snapshots s WHERE s.stream_id = w.stream_id), 0) END
ORDER BY stream_id, snapshot DESC, version
"""

_STREAMS = """
SELECT global_position, stream_id, version, event_id, type, data, metadata,
       transaction_id::text::bigint AS transaction_id, recorded_at
FROM events WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version
"""


# --- the saga list read model -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SagaSummary:
    """One row of ``saga_summaries``: a saga as status and list show it. The fields are the
    table's columns, in order."""

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
    dataset: str | None = None  # the request's dataset, or its data file's name

    def as_json(self, *, with_state: bool = True) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _SUMMARY_FIELDS if name != "saga_state"}
        out.update(
            saga_id=str(self.saga_id),
            steps_completed=list(self.steps_completed),
            started_at=self.started_at.isoformat(),
            updated_at=self.updated_at.isoformat(),
        )
        if with_state:
            out["saga_state"] = json.loads(self.saga_state) if isinstance(self.saga_state, str) else self.saga_state
        return out

    def args(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _SUMMARY_FIELDS)


_SUMMARY_FIELDS = tuple(f.name for f in fields(SagaSummary))
_SUMMARY_COLUMNS = ", ".join(_SUMMARY_FIELDS)

_UPSERT_SUMMARY = f"""
INSERT INTO saga_summaries ({_SUMMARY_COLUMNS})
VALUES ({", ".join(f"${n}" for n in range(1, len(_SUMMARY_FIELDS) + 1))})
ON CONFLICT (saga_id) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in _SUMMARY_FIELDS[1:])}
WHERE saga_summaries.version <= excluded.version
"""

# Every filter is a bound parameter; NULL means "any".
_LIST_WHERE = """
WHERE ($1::text IS NULL OR state = $1)
  AND ($2::text IS NULL OR workflow = $2)
  AND ($3::int IS NULL OR workflow_version = $3)
  AND ($4::timestamptz IS NULL OR started_at >= $4)
  AND ($5::timestamptz IS NULL OR started_at < $5)
  AND ($6::text IS NULL OR dataset = $6)
  AND ($7::boolean IS NULL OR (verdict->>'accepted')::boolean = $7)
  AND ($8::float8 IS NULL OR (metrics->>'sharpe')::float8 >= $8)
  AND ($9::float8 IS NULL OR (metrics->>'sharpe')::float8 <= $9)
"""
# Keyset pagination: a page starts after the (started_at, saga_id) of the last row shown,
# in the list's order, so that sagas started meanwhile neither repeat nor shift a page.
_LIST_SUMMARIES = {
    False: f"""SELECT {_SUMMARY_COLUMNS} FROM saga_summaries {_LIST_WHERE}
  AND ($11::timestamptz IS NULL OR (started_at, saga_id) < ($11, $12::uuid))
ORDER BY started_at DESC, saga_id DESC LIMIT $10""",
    True: f"""SELECT {_SUMMARY_COLUMNS} FROM saga_summaries {_LIST_WHERE}
  AND ($11::timestamptz IS NULL OR (started_at, saga_id) > ($11, $12::uuid))
ORDER BY started_at, saga_id LIMIT $10""",
}


@dataclass(frozen=True, slots=True)
class SagaFilter:
    """Which sagas a list shows; None means any."""

    state: str | None = None
    workflow: str | None = None
    workflow_version: int | None = None
    dataset: str | None = None
    accepted: bool | None = None
    min_sharpe: float | None = None
    max_sharpe: float | None = None
    started_after: dt.datetime | None = None
    started_before: dt.datetime | None = None
    limit: int | None = None
    oldest_first: bool = False
    # Rows after this (started_at, saga_id), in the list's order: the last row of a page.
    after: tuple[dt.datetime, uuid.UUID] | None = None


def _summary(r: asyncpg.Record) -> SagaSummary:
    return SagaSummary(**dict(r))


class SagaStore:
    """The orchestrator's tables, over the event store's database and schema.

    ``commit_pool``, when given, takes the commits of up to ``small_commit_max`` sagas (see
    ``tuning.COMMIT_POOL_SETTINGS``); everything else runs on the event store's pool."""

    def __init__(
        self, events: EventStore, *, commit_pool: asyncpg.Pool | None = None, small_commit_max: int = 0
    ) -> None:
        self.events = events
        self.commit_pool = commit_pool or events.pool
        self.small_commit_max = small_commit_max
        self._channel = outbox_channel(events.schema)

    @property
    def schema(self) -> str:
        return self.events.schema

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.events.pool.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async with self.events.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    # --- the unit of work ---

    async def commit(self, changes: Changes) -> None:
        """Write ``changes`` atomically; raises ``SagaMovedOn`` (writing nothing) when a saga
        moved on since it was read, or ``Conflict`` for a duplicate."""
        try:
            ok = await self._commit(changes)
        except _RACES as exc:
            raise Conflict(str(exc)) from exc
        if not ok:
            raise SagaMovedOn("a saga moved on since it was read; nothing was written")

    async def _commit(self, changes: Changes) -> bool:
        e, t, s = changes.events, changes.timers, changes.snapshots
        small = len(changes.expected) <= self.small_commit_max
        pool = self.commit_pool if small else self.events.pool
        async with pool.acquire() as conn:
            ok: bool = await conn.fetchval(
                COMMIT_SQL,
                INBOX,
                changes.inbox,
                [x[0] for x in e],
                [x[1] for x in e],
                [x[2] for x in e],
                [x[3].event_id for x in e],
                [x[3].type for x in e],
                [x[3].data for x in e],
                [x[3].metadata for x in e],
                [x.saga_id for x in t],
                [x.due_at for x in t],
                [str(x.kind) for x in t],
                [x.step for x in t],
                [x.attempt for x in t],
                [x.version for x in t],
                changes.cleared_timers,
                [x.stream_id for x in s],
                [x.version for x in s],
                [x.type for x in s],
                [x.state for x in s],
                changes.notify,
                list(changes.expected),
                list(changes.expected.values()),
                self._channel,
            )
        return ok

    # --- inbox ---

    async def handled(self, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` the orchestrator has handled already."""
        rows = await self._fetch(
            "SELECT message_id FROM inbox WHERE consumer = $1 AND message_id = ANY($2::text[])",
            INBOX,
            list(message_ids),
        )
        return {r["message_id"] for r in rows}

    # --- timers ---

    async def due_timers(self, limit: int) -> list[Timer]:
        """Deadlines due now, the oldest first."""
        rows = await self._fetch(
            "SELECT saga_id, due_at, kind, step, attempt, version FROM saga_timers"
            " WHERE due_at <= now() ORDER BY due_at LIMIT $1",
            limit,
        )
        return [
            Timer(r["saga_id"], r["due_at"], TimerKind(r["kind"]), r["step"], r["attempt"], r["version"]) for r in rows
        ]

    async def drop_fired_timer(self, timer: Timer, message_id: str) -> None:
        """Delete ``timer``'s row once the message that fired it is in the inbox: a row still
        naming it then is a race lost to another orchestrator, and must not come due again."""
        async with self.events.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM saga_timers WHERE saga_id = $1 AND kind = $2 AND step = $3 AND attempt = $4"
                " AND EXISTS (SELECT 1 FROM inbox WHERE consumer = $5 AND message_id = $6)",
                timer.saga_id,
                str(timer.kind),
                timer.step,
                timer.attempt,
                INBOX,
                message_id,
            )

    async def timer_backlog(self) -> int:
        """Deadlines already due and not yet fired."""
        return int(await self._fetchval("SELECT count(*) FROM saga_timers WHERE due_at <= now()"))

    # --- sagas ---

    async def load_rows(self, saga_ids: Sequence[uuid.UUID], known: Mapping[uuid.UUID, int]) -> list[StoredRow]:
        """For each saga: the events after the version in ``known``; for a saga not in it,
        its snapshot (if any) and the events after the snapshot. Ordered by saga, the
        snapshot first, then by version."""
        streams = [saga_stream(s) for s in saga_ids]
        after = [known.get(s, 0) for s in saga_ids]
        rows = await self._fetch(_LOAD_MANY, streams, after)
        return [
            StoredRow(
                r["snapshot"], uuid.UUID(r["stream_id"].removeprefix(SAGA_PREFIX)), r["version"], r["type"], r["data"]
            )
            for r in rows
        ]

    async def events_of(self, saga_id: uuid.UUID, *, after_version: int = 0) -> list[RecordedEvent]:
        return await self.events.read_stream(saga_stream(saga_id), after_version=after_version)

    async def outbox_of(self, saga_id: uuid.UUID, *, after_version: int = 0) -> list[RecordedEvent]:
        """The messages the saga sent (its commands and lifecycle events), in order."""
        return await self.events.read_stream(outbox_stream(str(saga_id)), after_version=after_version)

    async def events_of_many(
        self, saga_ids: Sequence[uuid.UUID], conn: Conn | None = None
    ) -> dict[uuid.UUID, list[RecordedEvent]]:
        """Each saga's whole stream, oldest first, in one query."""
        args = [saga_stream(s) for s in saga_ids]
        if conn is None:
            async with self.events.pool.acquire() as c:
                records = await c.fetch(_STREAMS, args)
        else:
            records = await conn.fetch(_STREAMS, args)
        by_saga: dict[uuid.UUID, list[RecordedEvent]] = {}
        for r in records:
            row = RecordedEvent(**dict(r))
            by_saga.setdefault(uuid.UUID(row.stream_id.removeprefix(SAGA_PREFIX)), []).append(row)
        return by_saga

    async def latest_version(self, saga_id: uuid.UUID) -> int:
        """The number of the saga's events (0: no such saga)."""
        version = await self._fetchval("SELECT max(version) FROM events WHERE stream_id = $1", saga_stream(saga_id))
        return int(version or 0)

    async def sagas_with_prefix(self, prefix: str, *, limit: int = 2) -> list[uuid.UUID]:
        """Sagas whose id starts with ``prefix`` (hex digits and dashes only)."""
        if not all(c in "0123456789abcdef-" for c in prefix):
            return []
        rows = await self._fetch(
            "SELECT DISTINCT stream_id FROM events WHERE stream_id LIKE $1 LIMIT $2", f"{SAGA_PREFIX}{prefix}%", limit
        )
        return [uuid.UUID(r["stream_id"].removeprefix(SAGA_PREFIX)) for r in rows]

    # --- snapshots ---

    async def snapshot(self, saga_id: uuid.UUID) -> Snapshot | None:
        async with self.events.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT version, type, state::text AS state FROM snapshots WHERE stream_id = $1", saga_stream(saga_id)
            )
        return (
            None if row is None else Snapshot(saga_stream(saga_id), row["version"], row["type"], JsonText(row["state"]))
        )

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        async with self.events.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO snapshots (stream_id, version, type, state) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, type = excluded.type,"
                " state = excluded.state, recorded_at = now() WHERE snapshots.version < excluded.version",
                snapshot.stream_id,
                snapshot.version,
                snapshot.type,
                snapshot.state,
            )

    # --- summaries (the saga list) ---

    @staticmethod
    async def upsert_summaries(conn: Conn, summaries: Sequence[SagaSummary]) -> None:
        """Write summaries; a row is never replaced by one folded from fewer events."""
        if summaries:
            await conn.executemany(_UPSERT_SUMMARY, [s.args() for s in summaries])

    async def save_summary(self, summary: SagaSummary) -> None:
        async with self.events.transaction() as conn:
            await self.upsert_summaries(conn, [summary])

    @staticmethod
    async def clear_summaries(conn: Conn) -> None:
        """Empty the read model (it is rebuilt from the log)."""
        await conn.execute("DELETE FROM saga_summaries")

    async def summary(self, saga_id: uuid.UUID) -> SagaSummary | None:
        rows = await self._fetch(f"SELECT {_SUMMARY_COLUMNS} FROM saga_summaries WHERE saga_id = $1", saga_id)
        return _summary(rows[0]) if rows else None

    async def summaries(self, where: SagaFilter = SagaFilter()) -> list[SagaSummary]:
        """Newest first, or oldest first."""
        after_at, after_id = where.after or (None, None)
        rows = await self._fetch(
            _LIST_SUMMARIES[where.oldest_first],
            where.state,
            where.workflow,
            where.workflow_version,
            where.started_after,
            where.started_before,
            where.dataset,
            where.accepted,
            where.min_sharpe,
            where.max_sharpe,
            where.limit,
            after_at,
            after_id,
        )
        return [_summary(r) for r in rows]

    async def count_summaries(self) -> int:
        return int(await self._fetchval("SELECT count(*) FROM saga_summaries"))
