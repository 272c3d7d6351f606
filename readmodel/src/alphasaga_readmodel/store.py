"""Every SQL statement of the read model: the ``saga_summaries`` table (the saga list), and
the reads of a saga's streams that front ends need (its events, its outbox, a saga found
by a prefix of its id, how far the log has got). The event log itself is the event
store's (``alphasaga_shared.eventstore``); this module only reads it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from alphasaga_contracts import SagaState
from alphasaga_saga.streams import SAGA_PREFIX, saga_stream
from alphasaga_shared.eventstore import OUTBOX_PREFIX, Conn, EventStore, Position, RecordedEvent, outbox_stream
from alphasaga_shared.eventstore.archive import Archive

from .summaries import COLUMNS, SagaFilter, SagaSummary

_COLUMN_LIST = ", ".join(COLUMNS)

_UPSERT_SUMMARY = f"""
INSERT INTO saga_summaries ({_COLUMN_LIST})
VALUES ({", ".join(f"${n}" for n in range(1, len(COLUMNS) + 1))})
ON CONFLICT (saga_id) DO UPDATE SET
    {", ".join(f"{name} = excluded.{name}" for name in COLUMNS[1:])}
WHERE saga_summaries.version <= excluded.version
"""

# The row and the number of the saga's events, in one round trip: a row behind the log
# (the projector has not got there yet) is not the answer.
_STATUS = f"""
SELECT (SELECT max(version) FROM events WHERE stream_id = $2) AS latest, s.*
FROM (SELECT 1) AS one LEFT JOIN (SELECT {_COLUMN_LIST} FROM saga_summaries WHERE saga_id = $1) AS s ON true
"""

# The saga list's filters: each a bound parameter, and only those set are in the statement,
# so that every plan, custom or generic, can bound an index scan by them (with
# ``$n IS NULL OR ...`` a generic plan filtered every row of a history; docs/decisions/0017).
_LIST_FILTERS: tuple[tuple[str, str], ...] = (
    ("state", "state = {}::text"),
    ("workflow", "workflow = {}::text"),
    ("workflow_version", "workflow_version = {}::int"),
    ("started_after", "started_at >= {}::timestamptz"),
    ("started_before", "started_at < {}::timestamptz"),
    ("dataset", "dataset = {}::text"),
    ("accepted", "(verdict->>'accepted')::boolean = {}::boolean"),
    ("min_sharpe", "(metrics->>'sharpe')::float8 >= {}::float8"),
    ("max_sharpe", "(metrics->>'sharpe')::float8 <= {}::float8"),
    ("id_prefix", "saga_id::text LIKE {}::text || '%'"),
)


def _list_statement(where: SagaFilter) -> tuple[str, list[Any]]:
    """The saga list's statement and its arguments. Keyset pagination: a page starts after
    the (started_at, saga_id) of the last row shown, in the list's order, so that sagas
    started meanwhile neither repeat nor shift a page; the indexes end in the same two
    columns, in the same order (migration 0010), so a page is read from where it starts."""
    conditions, args = [], []
    for name, condition in _LIST_FILTERS:
        value = getattr(where, name)
        if value is not None:
            args.append(value)
            conditions.append(condition.format(f"${len(args)}"))
    if where.after is not None:
        args += list(where.after)
        past = ">" if where.oldest_first else "<"
        conditions.append(f"(started_at, saga_id) {past} (${len(args) - 1}::timestamptz, ${len(args)}::uuid)")
    order = "started_at, saga_id" if where.oldest_first else "started_at DESC, saga_id DESC"
    # A parameter, not a literal: a generic plan's guess for `LIMIT $n` keeps it dearer than
    # the custom ones, so PostgreSQL never switches to one that cannot bound a rare filter.
    args.append(where.limit)
    sql = f"SELECT {_COLUMN_LIST} FROM saga_summaries"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    return f"{sql} ORDER BY {order} LIMIT ${len(args)}", args


# Where the projector resumes a saga it does not hold: its newest snapshot (the saga store
# writes them, every ALPHASAGA_SNAPSHOT_EVERY events), with the times of its first event and
# of the snapshot's own, then only the events after it; a long saga is not folded from its
# start (docs/decisions/0018).
_SNAPSHOTS = """
SELECT s.stream_id, s.version, s.type, s.state::text AS state,
       (SELECT e.recorded_at FROM events e WHERE e.stream_id = s.stream_id AND e.version = 1) AS started_at,
       (SELECT e.recorded_at FROM events e WHERE e.stream_id = s.stream_id AND e.version = s.version) AS taken_at
FROM snapshots s WHERE s.stream_id = ANY($1::text[])
"""
_STREAMS_AFTER = """
SELECT e.global_position, e.stream_id, e.version, e.event_id, e.type, e.data::text AS data, e.metadata,
       e.transaction_id::text::bigint AS transaction_id, e.recorded_at
FROM unnest($1::text[], $2::int[]) AS w(stream_id, after) JOIN events e USING (stream_id)
WHERE e.version > w.after ORDER BY e.stream_id, e.version
"""

# The newest saga event that a reader of the log in commit order can see now (rows of
# transactions still running are held back from it, as from the projector).
# Every saga event this reader can see, committed: also those of transactions above the
# snapshot's xmin (the projector gets to them once the older transactions end). Cut at
# xmin, a transaction left open anywhere on the server made a list answer at once without
# a saga committed before the call.
_SAGA_LOG_HEAD = f"""
SELECT transaction_id::text::bigint AS t, global_position AS g FROM events
WHERE stream_id LIKE '{SAGA_PREFIX}%'
ORDER BY transaction_id DESC, global_position DESC LIMIT 1
"""

_HEX = frozenset("0123456789abcdef-")
_FINAL_STATES = sorted(s.value for s in SagaState if s.terminal)

# Finished sagas the archive has not taken yet, that ended before a time: the longest ended
# first, a page after a (time, saga id) keyset.
_TO_ARCHIVE = """
SELECT saga_id, updated_at FROM saga_summaries
WHERE archived_at IS NULL AND state = ANY($1::text[]) AND updated_at < $2
  AND ($4::timestamptz IS NULL OR (updated_at, saga_id) > ($4, $5::uuid))
ORDER BY updated_at, saga_id LIMIT $3
"""


def _uuid_bounds(prefix: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The smallest and largest saga ids that start with ``prefix`` (hex digits, dashes)."""
    digits = prefix.replace("-", "")[:32]
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


@dataclass(frozen=True, slots=True)
class Resume:
    """Where to fold a saga from: its snapshot (None: its first event), and the events after."""

    snapshot: SnapshotRow | None
    rows: list[RecordedEvent]


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    version: int
    type: str
    state: str
    started_at: dt.datetime | None  # the saga's first event's time (None: its events are gone)
    taken_at: dt.datetime | None  # the time of the event the snapshot was taken after


def _summary(r: asyncpg.Record) -> SagaSummary:
    return SagaSummary(**{name: r[name] for name in COLUMNS})


class ReadStore:
    """The read model's tables and reads, over the event store's database and schema."""

    def __init__(self, events: EventStore) -> None:
        self.events = events
        self.archive = Archive(events)

    @property
    def schema(self) -> str:
        return self.events.schema

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.events.pool.fetch(sql, *args)
        return rows

    # --- the saga list (saga_summaries) ---

    @staticmethod
    async def upsert_summaries(conn: Conn, summaries: Sequence[SagaSummary]) -> None:
        """Write summaries; a row is never replaced by one folded from fewer events."""
        if summaries:
            await conn.executemany(_UPSERT_SUMMARY, [s.args() for s in summaries])

    @staticmethod
    async def clear_summaries(conn: Conn) -> None:
        """Empty the read model (it is rebuilt from the log)."""
        await conn.execute("DELETE FROM saga_summaries")

    async def summary(self, saga_id: uuid.UUID) -> SagaSummary | None:
        rows = await self._fetch(f"SELECT {_COLUMN_LIST} FROM saga_summaries WHERE saga_id = $1", saga_id)
        return _summary(rows[0]) if rows else None

    async def summary_and_version(self, saga_id: uuid.UUID) -> tuple[SagaSummary | None, int]:
        """The saga's row (None when there is none yet) and the number of its events."""
        rows = await self._fetch(_STATUS, saga_id, saga_stream(saga_id))
        row = rows[0]
        return (None if row["saga_id"] is None else _summary(row)), int(row["latest"] or 0)

    async def summaries(self, where: SagaFilter | None = None) -> list[SagaSummary]:
        """Newest first, or oldest first."""
        sql, args = _list_statement(where or SagaFilter())
        return [_summary(r) for r in await self._fetch(sql, *args)]

    async def state_counts(self) -> dict[str, int]:
        """How many sagas are in each state (states with none are left out)."""
        rows = await self._fetch("SELECT state, count(*) AS n FROM saga_summaries GROUP BY state")
        return {r["state"]: int(r["n"]) for r in rows}

    async def count_summaries(self) -> int:
        return int(await self.events.pool.fetchval("SELECT count(*) FROM saga_summaries"))

    # --- a saga's streams ---

    async def known(self, saga_id: uuid.UUID) -> bool:
        """Whether the saga id has a saga, or an outbox (a recorded start, a refusal), or a
        row of the list (an archived saga's)."""
        return bool(
            await self.events.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = ANY($1::text[]))"
                " OR EXISTS (SELECT 1 FROM saga_summaries WHERE saga_id = $2)",
                [saga_stream(saga_id), outbox_stream(str(saga_id))],
                saga_id,
            )
        )

    async def latest_version(self, saga_id: uuid.UUID) -> int:
        """The number of the saga's events (0: no such saga)."""
        version = await self.events.pool.fetchval(
            "SELECT max(version) FROM events WHERE stream_id = $1", saga_stream(saga_id)
        )
        return int(version or 0)

    async def sagas_with_prefix(self, prefix: str, *, limit: int = 2) -> list[uuid.UUID]:
        """Saga ids starting with ``prefix`` (hex digits and dashes only) that have a saga or
        an outbox, at most ``limit``."""
        if not all(c in _HEX for c in prefix):
            return []
        rows = await self._fetch(
            "SELECT DISTINCT stream_id FROM events WHERE stream_id LIKE $1 OR stream_id LIKE $2 LIMIT $3",
            f"{SAGA_PREFIX}{prefix}%",
            f"{OUTBOX_PREFIX}{prefix}%",
            2 * limit,  # a saga id may have both streams
        )
        found: dict[uuid.UUID, None] = {}
        low, high = _uuid_bounds(prefix)
        archived = await self._fetch(
            "SELECT saga_id FROM saga_summaries WHERE saga_id BETWEEN $1 AND $2 AND archived_at IS NOT NULL"
            " ORDER BY saga_id LIMIT $3",
            low,
            high,
            limit,
        )
        found.update(dict.fromkeys(r["saga_id"] for r in archived))
        for r in rows:
            text = r["stream_id"].removeprefix(SAGA_PREFIX).removeprefix(OUTBOX_PREFIX)
            try:
                found[uuid.UUID(text)] = None
            except ValueError:
                continue  # an outbox whose correlation id is not a saga id
        return list(found)[:limit]

    async def events_of(
        self, saga_id: uuid.UUID, *, after_version: int = 0, archived: bool = False
    ) -> list[RecordedEvent]:
        """The saga's events: hot, or, when none are, archived; only the archived copy with
        ``archived``."""
        return await self._stream(saga_stream(saga_id), after_version, archived)

    async def outbox_of(
        self, saga_id: uuid.UUID, *, after_version: int = 0, archived: bool = False
    ) -> list[RecordedEvent]:
        """The messages recorded for the saga id (its start when submitted through the
        outbox, its commands, its lifecycle events, a refusal), in order; archived as
        ``events_of``."""
        return await self._stream(outbox_stream(str(saga_id)), after_version, archived)

    async def _stream(self, stream_id: str, after_version: int, archived: bool) -> list[RecordedEvent]:
        rows = [] if archived else await self.events.read_stream(stream_id, after_version=after_version)
        if not rows:  # a saga the archive took moves whole: its rows are all hot or all archived
            rows = await self.archive.read_stream(stream_id, after_version=after_version)
        return rows

    # --- the archive's marks ---

    async def to_archive(
        self,
        ended_before: dt.datetime,
        limit: int,
        after: tuple[dt.datetime, uuid.UUID] | None = None,
        conn: Conn | None = None,
    ) -> list[tuple[dt.datetime, uuid.UUID]]:
        """Sagas that ended (in a final state) before ``ended_before`` and are not archived
        yet, the longest ended first (a page after ``after``), each with the time it ended."""
        after_at, after_id = after or (None, None)
        args = (_FINAL_STATES, ended_before, limit, after_at, after_id)
        rows = await (conn.fetch(_TO_ARCHIVE, *args) if conn is not None else self._fetch(_TO_ARCHIVE, *args))
        return [(r["updated_at"], r["saga_id"]) for r in rows]

    async def archive_lag(self, ended_before: dt.datetime) -> float:
        """How long, in seconds, the longest-waiting saga due for the archive (ended before
        ``ended_before``, not archived) has been due: 0 when none is."""
        oldest = await self.to_archive(ended_before, 1)
        return (ended_before - oldest[0][0]).total_seconds() if oldest else 0.0

    @staticmethod
    async def mark_archived(conn: Conn, saga_ids: Sequence[uuid.UUID]) -> None:
        """Note that these sagas' events are archived (in the archive's transaction)."""
        await conn.execute("UPDATE saga_summaries SET archived_at = now() WHERE saga_id = ANY($1::uuid[])", saga_ids)

    @staticmethod
    async def resume_points(conn: Conn, saga_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Resume]:
        """Each saga's newest snapshot, if any, and the events after it (after its first
        event's, without one), in one transaction's view."""
        streams = [saga_stream(s) for s in saga_ids]
        snapshots = {
            r["stream_id"]: SnapshotRow(r["version"], r["type"], r["state"], r["started_at"], r["taken_at"])
            for r in await conn.fetch(_SNAPSHOTS, streams)
        }
        after = [snapshots[s].version if s in snapshots else 0 for s in streams]
        rows: dict[str, list[RecordedEvent]] = {}
        for r in await conn.fetch(_STREAMS_AFTER, streams, after):
            rows.setdefault(r["stream_id"], []).append(RecordedEvent(**dict(r)))
        return {
            saga_id: Resume(snapshots.get(stream), rows.get(stream, []))
            for saga_id, stream in zip(saga_ids, streams, strict=True)
            if stream in snapshots or stream in rows
        }

    async def saga_log_head(self) -> Position | None:
        """Where the projector must have got to for the saga list to hold every saga event
        committed so far; None when there is none."""
        rows = await self._fetch(_SAGA_LOG_HEAD)
        return Position(int(rows[0]["t"]), int(rows[0]["g"])) if rows else None
