"""The saga store: every SQL statement over the orchestrator's tables.

- the unit of work that commits a batch of decisions (``commit``): the sagas' new events,
  their outgoing messages (outbox rows), the inbox records, the timers and snapshots, in
  one statement;
- the inbox (message ids already handled), the timers (``saga_timers``), the snapshots;
- loading sagas to decide on: their snapshots and events.

The event log itself is the event store's (``alphasaga_shared.eventstore``); this module
builds on it. The saga list (``saga_summaries``) and the reads front ends need are the
read model's (``alphasaga_readmodel.store``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from alphasaga_saga.aggregate import TimerKind
from alphasaga_saga.streams import SAGA_PREFIX, saga_stream
from alphasaga_shared.eventstore import (
    EventStore,
    JsonText,
    RecordedEvent,
    outbox_channel,
)

from .storage import (
    Changes,
    Conflict,
    SagaMovedOn,
    Snapshot,
    StoredRow,
    Timer,
)

__all__ = ["SagaMovedOn", "Snapshot", "Timer"]

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
# process, and may carry the outbox rows it is to publish; it is delivered at commit.
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
SELECT g.ok, (SELECT count(*) FROM (SELECT pg_notify($24, $21) WHERE $21::text IS NOT NULL AND g.ok) AS notified)
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
                changes.notice,
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
