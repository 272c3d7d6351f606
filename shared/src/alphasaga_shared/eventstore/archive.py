"""The archive of finished sagas: every SQL statement over ``archived_events`` and
``archive_manifests``, and the one sanctioned way rows leave ``events`` (migration 0011,
docs/decisions/0018).

``move`` takes a saga's two streams (``saga-<id>``, ``outbox:<id>``) out of the hot table
whole, inside the caller's transaction: it records a manifest (the rows' counts and one
SHA-256 over them, computed from the hot rows), copies the rows unchanged, deletes them
(the table's trigger refuses the DELETE unless every row has an identical copy here and
its whole stream goes) and computes the digest again over the copies; any difference
raises and rolls everything back. Nothing here ever edits a row: both tables refuse UPDATE,
DELETE and TRUNCATE.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .store import _COLUMNS, OUTBOX_PREFIX, Conn, EventStore, RecordedEvent, _row, outbox_stream

# Kept beside each other on purpose: the saga package owns the name (``alphasaga_saga.
# streams``), which ``shared`` cannot import; the migration's trigger spells it too.
SAGA_PREFIX = "saga-"

# One line per row, in (stream, version) order, as JSON text: injective, and the same
# whatever the session's time zone or date style (the time goes in as epoch microseconds).
_DIGEST = """
encode(sha256(convert_to(string_agg(
    jsonb_build_array(global_position, stream_id, version, event_id, type, data, metadata,
                      transaction_id::text, (extract(epoch FROM recorded_at) * 1000000)::bigint)::text,
    E'\\n' ORDER BY stream_id, version), 'UTF8')), 'hex')
"""

# Per saga in $1: its counts, digest and last time, over the rows of table {table}.
_SUMMARISE = f"""
WITH wanted AS (SELECT unnest($1::uuid[]) AS saga_id),
rows AS (
    SELECT w.saga_id, r.* FROM wanted w
    JOIN {{table}} r ON r.stream_id IN ('{SAGA_PREFIX}' || w.saga_id::text, '{OUTBOX_PREFIX}' || w.saga_id::text)
)
SELECT saga_id,
       count(*) FILTER (WHERE stream_id LIKE '{SAGA_PREFIX}%') AS events,
       count(*) FILTER (WHERE stream_id LIKE '{OUTBOX_PREFIX}%') AS outbox,
       max(recorded_at) FILTER (WHERE stream_id LIKE '{SAGA_PREFIX}%') AS finished_at,
       {_DIGEST} AS sha256
FROM rows GROUP BY saga_id
"""

# The sagas of $1 whose newest event is of an ended type ($2) and older than $3.
_FINISHED = f"""
SELECT w.saga_id FROM unnest($1::uuid[]) AS w(saga_id)
CROSS JOIN LATERAL (
    SELECT type, recorded_at FROM events
    WHERE stream_id = '{SAGA_PREFIX}' || w.saga_id::text ORDER BY version DESC LIMIT 1
) last
WHERE last.type = ANY($2::text[]) AND last.recorded_at < $3
"""


def due_before(hot_days: float, now: dt.datetime | None = None) -> dt.datetime:
    """The retention policy's cut: a saga that ended before it is due for the archive."""
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=hot_days)


def streams_of(saga_id: uuid.UUID) -> list[str]:
    return [f"{SAGA_PREFIX}{saga_id}", outbox_stream(str(saga_id))]


@dataclass(frozen=True, slots=True)
class Manifest:
    """What was archived of one saga: the counts of its two streams' rows and their digest."""

    saga_id: uuid.UUID
    events: int
    outbox: int
    sha256: str
    finished_at: dt.datetime
    archived_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Totals:
    sagas: int
    events: int
    outbox: int
    oldest: dt.datetime | None
    newest: dt.datetime | None


class ArchiveMismatch(Exception):
    """The archived copy of a saga differs from what was (or should be) archived."""


class Archive:
    """The archive tables, over the event store's database and schema."""

    def __init__(self, events: EventStore) -> None:
        self.events = events

    async def move(
        self, conn: Conn, saga_ids: Sequence[uuid.UUID], *, ended: Sequence[str], before: dt.datetime
    ) -> list[Manifest]:
        """Move the sagas of ``saga_ids`` that ended (their newest event is of a type in
        ``ended``) before ``before`` to the archive, in ``conn``'s transaction (the caller's,
        so that what it records beside, the read model's mark, commits with the move).
        Returns their manifests; raises ``ArchiveMismatch`` when a copy differs."""
        await self.lock(conn)
        finished = [r["saga_id"] for r in await conn.fetch(_FINISHED, list(saga_ids), list(ended), before)]
        if not finished:
            return []
        streams = [s for saga_id in finished for s in streams_of(saga_id)]
        hot = {m.saga_id: m for m in await self._summarise(conn, finished, "events")}
        await conn.executemany(
            "INSERT INTO archive_manifests (saga_id, events, outbox, sha256, finished_at) VALUES ($1, $2, $3, $4, $5)",
            [(m.saga_id, m.events, m.outbox, m.sha256, m.finished_at) for m in hot.values()],
        )
        await conn.execute(
            "INSERT INTO archived_events SELECT * FROM events WHERE stream_id = ANY($1::text[])", streams
        )
        await conn.execute("DELETE FROM events WHERE stream_id = ANY($1::text[])", streams)
        copied = {m.saga_id: m for m in await self._summarise(conn, finished, "archived_events")}
        for saga_id, manifest in hot.items():
            if copied.get(saga_id) != manifest:
                raise ArchiveMismatch(f"saga {saga_id}: the archived copy {copied.get(saga_id)} is not {manifest}")
        return list(hot.values())

    async def lock(self, conn: Conn) -> None:
        """One move at a time, until ``conn``'s transaction ends (taking it again is free): a
        caller that chooses its sagas after taking it never chooses one another moved."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.events.lock_key("archive"))

    async def _summarise(self, conn: Conn, saga_ids: Sequence[uuid.UUID], table: str) -> list[Manifest]:
        rows = await conn.fetch(_SUMMARISE.format(table=table), list(saga_ids))
        return [Manifest(r["saga_id"], r["events"], r["outbox"], r["sha256"], r["finished_at"]) for r in rows]

    # --- reading ---

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        """An archived stream's rows, as ``EventStore.read_stream`` returned them when hot."""
        rows = await self.events.pool.fetch(
            f"SELECT {_COLUMNS} FROM archived_events WHERE stream_id = $1 AND version > $2 ORDER BY version",
            stream_id,
            after_version,
        )
        return [_row(r) for r in rows]

    async def saga_streams(self, saga_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[RecordedEvent]]:
        """The archived ``saga-<id>`` streams of ``saga_ids``, oldest event first."""
        rows = await self.events.pool.fetch(
            f"SELECT {_COLUMNS} FROM archived_events WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version",
            [f"{SAGA_PREFIX}{s}" for s in saga_ids],
        )
        found: dict[uuid.UUID, list[RecordedEvent]] = {}
        for r in rows:
            row = _row(r)
            found.setdefault(uuid.UUID(row.stream_id.removeprefix(SAGA_PREFIX)), []).append(row)
        return found

    async def manifest(self, saga_id: uuid.UUID) -> Manifest | None:
        page = await self.manifests(only=[saga_id])
        return page[0] if page else None

    async def manifests(
        self, *, after: uuid.UUID | None = None, limit: int = 1000, only: Sequence[uuid.UUID] | None = None
    ) -> list[Manifest]:
        """Manifests by saga id, a page after ``after`` (keyset), or those of ``only``."""
        rows = await self.events.pool.fetch(
            "SELECT saga_id, events, outbox, sha256, finished_at, archived_at FROM archive_manifests"
            " WHERE ($1::uuid IS NULL OR saga_id > $1) AND ($3::uuid[] IS NULL OR saga_id = ANY($3))"
            " ORDER BY saga_id LIMIT $2",
            after,
            limit,
            None if only is None else list(only),
        )
        return [Manifest(**dict(r)) for r in rows]

    async def sample(self, size: int) -> list[uuid.UUID]:
        """Up to ``size`` archived saga ids, chosen at random (a spot check's sample)."""
        rows = await self.events.pool.fetch("SELECT saga_id FROM archive_manifests ORDER BY random() LIMIT $1", size)
        return [r["saga_id"] for r in rows]

    async def totals(self) -> Totals:
        row = await self.events.pool.fetchrow(
            "SELECT count(*) AS sagas, coalesce(sum(events), 0) AS events, coalesce(sum(outbox), 0) AS outbox,"
            " min(archived_at) AS oldest, max(archived_at) AS newest FROM archive_manifests"
        )
        assert row is not None  # an aggregate returns a row
        return Totals(row["sagas"], int(row["events"]), int(row["outbox"]), row["oldest"], row["newest"])

    # --- checking ---

    async def verify(self, manifests: Sequence[Manifest]) -> list[str]:
        """What is wrong with the archived copies of these sagas: counts or digest unlike
        their manifests, or rows of theirs still in the hot table. Empty when all is well."""
        if not manifests:
            return []
        saga_ids = [m.saga_id for m in manifests]
        async with self.events.pool.acquire() as conn:
            copied = {m.saga_id: m for m in await self._summarise(conn, saga_ids, "archived_events")}
            left = await conn.fetch(
                "SELECT stream_id, count(*) AS n FROM events WHERE stream_id = ANY($1::text[]) GROUP BY stream_id",
                [s for saga_id in saga_ids for s in streams_of(saga_id)],
            )
        problems = [f"{r['stream_id']}: {r['n']} rows are still in the hot table" for r in left]
        for m in manifests:
            got = copied.get(m.saga_id)
            if got is None:
                problems.append(f"saga {m.saga_id}: its manifest names rows the archive does not hold")
            elif (got.events, got.outbox, got.sha256) != (m.events, m.outbox, m.sha256):
                problems.append(
                    f"saga {m.saga_id}: archived {got.events} events and {got.outbox} outbox rows with digest"
                    f" {got.sha256}, its manifest says {m.events}, {m.outbox} and {m.sha256}"
                )
        return problems
