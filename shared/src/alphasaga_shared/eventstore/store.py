"""The PostgreSQL event store, on asyncpg: the only SQL over ``events``, reader
positions and session locks in ``shared/``.

Streams are identified by text ids (``saga-<uuid>``, ``outbox:<correlation id>``); each
has contiguous versions from 1. ``append`` takes the version the caller last saw and
fails with ``ConcurrencyError`` when someone else appended in between.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .migrations import migrate

# Outgoing messages are rows of the stream ``outbox:<correlation id>`` (the log is the outbox).
OUTBOX_PREFIX = "outbox:"


def outbox_stream(correlation_id: str) -> str:
    return f"{OUTBOX_PREFIX}{correlation_id}"


def outbox_channel(schema: str) -> str:
    """The channel that commits adding outbox rows notify; relays listen on it."""
    return f"alphasaga_outbox_{schema}"


# A plain connection or one borrowed from the pool.
Conn = asyncpg.Connection | PoolConnectionProxy


class ConcurrencyError(Exception):
    """Another writer appended to the stream since ``expected_version``."""

    def __init__(self, stream_id: str, expected_version: int | None) -> None:
        super().__init__(f"stream {stream_id!r} is no longer at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


class Position(NamedTuple):
    """A place in commit order: (transaction id, global position)."""

    transaction_id: int
    global_position: int


START = Position(0, 0)


class Checkpoint(NamedTuple):
    """Where a reader has got to; for the relay, also the outbox rows it published past
    that position, and the epoch of the relay that holds it (see ``Relay``)."""

    position: Position
    published_ahead: frozenset[uuid.UUID] = frozenset()
    epoch: int = 0


class OutboxRef(NamedTuple):
    """Where an outbox row is in commit order, its id, and its stream and type (the relay
    closes an outbox whose terminal row it passes: ``close_outboxes``)."""

    position: Position
    event_id: uuid.UUID
    recorded_at: dt.datetime
    stream_id: str = ""
    type: str = ""


class JsonText(str):
    """JSON that is already serialised (by pydantic, or by eventsourcing's mapper): stored
    as it is instead of being parsed and serialised again on the hot path."""

    __slots__ = ()


def _encode_json(value: Any) -> str:
    return value if isinstance(value, JsonText) else json.dumps(value)


@dataclass(frozen=True, slots=True)
class NewEvent:
    type: str
    data: dict[str, Any] | JsonText
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    global_position: int
    stream_id: str
    version: int
    event_id: uuid.UUID
    type: str
    data: Any  # parsed JSON, or the text itself (by_positions, read_all(data_as_text=True))
    metadata: dict[str, Any]
    transaction_id: int
    recorded_at: dt.datetime

    @property
    def position(self) -> Position:
        return Position(self.transaction_id, self.global_position)


_COLUMNS = (
    "global_position, stream_id, version, event_id, type, data, metadata, "
    "transaction_id::text::bigint AS transaction_id, recorded_at"
)
# The same, with the data as JSON text instead of parsed (for rows passed on as they are).
_COLUMNS_DATA_AS_TEXT = _COLUMNS.replace(" data,", " data::text AS data,", 1)

# One statement: the version check, the versions and the insert. A concurrent writer at
# the same version loses on the (stream_id, version) unique index.
_APPEND = """
WITH cur AS (SELECT coalesce(max(version), 0) AS v FROM events WHERE stream_id = $1)
INSERT INTO events (stream_id, version, event_id, type, data, metadata)
SELECT $1, cur.v + e.ord, e.event_id, e.type, e.data, e.metadata
FROM cur, unnest($3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[])
     WITH ORDINALITY AS e(event_id, type, data, metadata, ord)
WHERE $2::integer IS NULL OR cur.v = $2::integer
RETURNING version
"""

# Rows of transactions still running (xid >= the oldest running xid) are held back
# until they commit or abort, so a late commit is never skipped.
_TAIL = f"""
SELECT {_COLUMNS} FROM events
WHERE (transaction_id, global_position) > ($1::text::xid8, $2::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  {{filter}}
ORDER BY transaction_id, global_position
LIMIT $3
"""
_TAIL_ALL = _TAIL.format(filter="")
_TAIL_PREFIX = _TAIL.format(filter="AND stream_id LIKE $4")
# The outbox tail's first read: where each row is and its id, nothing of its content (a
# relay that published most rows itself fetches only the others, with by_positions, as
# text: it sends them on as message bodies). A literal predicate, so the planner can use
# the partial outbox index.
_TAIL_OUTBOX_REFS = _TAIL.format(filter=f"AND stream_id LIKE '{OUTBOX_PREFIX}%'").replace(
    _COLUMNS,
    "global_position, event_id, transaction_id::text::bigint AS transaction_id, recorded_at, stream_id, type",
    1,
)
_BY_POSITIONS = f"""
SELECT {_COLUMNS_DATA_AS_TEXT} FROM events
WHERE global_position = ANY($1::bigint[]) ORDER BY transaction_id, global_position
"""
_TAIL_PREFIX_TEXT = _TAIL_PREFIX.replace(_COLUMNS, _COLUMNS_DATA_AS_TEXT, 1)
# The outbox rows up to a position (and those given by id) of the open outbox streams
# (``open_outboxes``) that hold none of the given (terminal) types: what the relay publishes
# again when Redis forgot. Bounded by the open streams, not the history (docs/decisions/
# 0028): each is probed on the (stream_id, version) index. Entries found ended, or whose
# rows have moved to the archive, are dropped in the same statement.
_UNFINISHED_OUTBOX = f"""
WITH stale AS (
    DELETE FROM open_outboxes w
    WHERE EXISTS (SELECT 1 FROM events t WHERE t.stream_id = w.stream_id AND t.type = ANY($1::text[]))
       OR NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = w.stream_id)
    RETURNING w.stream_id
)
SELECT {_COLUMNS_DATA_AS_TEXT.replace("stream_id,", "o.stream_id,", 1)} FROM open_outboxes w
JOIN events o ON o.stream_id = w.stream_id
WHERE w.stream_id NOT IN (SELECT stream_id FROM stale)
  AND ((o.transaction_id, o.global_position) <= ($2::text::xid8, $3::bigint) OR o.event_id = ANY($4::uuid[]))
ORDER BY o.transaction_id, o.global_position
"""
_CLOSE_OUTBOXES = "DELETE FROM open_outboxes WHERE stream_id = ANY($1::text[])"


def process_application_name(name: str) -> str:
    """``name`` and this process's id, as ``pg_stat_activity`` shows each session: which
    process holds it, also over a Unix socket, where no client port tells."""
    return f"{name} pid={os.getpid()}"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset query on release, a round trip per borrow
    (docs/decisions/0001). asyncpg still ends any open transaction itself; nothing on a
    pooled connection sets session variables, listens or holds a session lock (those get
    a connection of their own: ``session``)."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_encode_json, decoder=json.loads, schema="pg_catalog")


def _row(r: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(**dict(r))


async def _create_pool(
    dsn: str, schema: str, min_size: int, max_size: int, timeout: float, settings: Mapping[str, str]
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        init=_init_connection,
        reset=_keep_session,
        server_settings={
            "search_path": schema,
            # A forgotten open transaction would hold every log reader back.
            "idle_in_transaction_session_timeout": "60000",
            **settings,
        },
    )


class EventStore:
    def __init__(self, pool: asyncpg.Pool, schema: str, dsn: str | None = None) -> None:
        self.pool = pool
        self.schema = schema
        self._dsn = dsn
        self._other_pools: list[asyncpg.Pool] = []

    @classmethod
    async def connect(
        cls,
        dsn: str,
        schema: str = "alphasaga",
        *,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 5.0,
        application_name: str = "alphasaga",
    ) -> EventStore:
        """Connect, apply missing migrations in ``schema`` and return a ready store. The
        migrations run on the pool's first connection, not one of their own: a command line
        that reads one row pays for one connection (issue #25)."""
        pool = await _create_pool(
            dsn, schema, min_size, max_size, timeout, {"application_name": process_application_name(application_name)}
        )
        try:
            async with pool.acquire(timeout=timeout) as conn:
                await migrate(conn, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema, dsn)

    async def pool_with(
        self, settings: Mapping[str, str], *, application_name: str, max_size: int = 4, timeout: float = 5.0
    ) -> asyncpg.Pool:
        """Another pool on the same database and schema whose sessions carry ``settings``:
        for a hot statement that wants planner settings the others must not get. It is
        closed with the store."""
        if self._dsn is None:
            raise RuntimeError("this store was not opened with EventStore.connect: it has no DSN to reuse")
        pool = await _create_pool(
            self._dsn,
            self.schema,
            1,
            max_size,
            timeout,
            {**settings, "application_name": process_application_name(application_name)},
        )
        self._other_pools.append(pool)
        return pool

    async def session(self, *, application_name: str, timeout: float = 5.0) -> asyncpg.Connection:
        """A connection of its own, outside the pools, for a session-scoped lock: when the
        session is lost, so is the lock, and its owner must know at once (a termination
        listener, ``is_closed``)."""
        if self._dsn is None:
            raise RuntimeError("this store was not opened with EventStore.connect: it has no DSN to reuse")
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            timeout=timeout,
            server_settings={
                "search_path": self.schema,
                "application_name": process_application_name(application_name),
            },
        )
        await _init_connection(conn)
        return conn

    async def close(self) -> None:
        for pool in self._other_pools:
            await pool.close()
        await self.pool.close()

    def terminate(self) -> None:
        """Close every connection now, in use or not (when ``close`` takes too long)."""
        for pool in (*self._other_pools, self.pool):
            pool.terminate()

    async def ping(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def transaction(self, *, lock: str | None = None) -> AsyncIterator[Conn]:
        """A transaction on a pooled connection; with ``lock``, holding the advisory lock of
        that name (in this schema) until it ends, so that one holder at a time runs it."""
        async with self.pool.acquire() as conn, conn.transaction():
            if lock is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.lock_key(lock))
            yield conn

    def lock_key(self, name: str) -> str:
        # Advisory locks are per database; schemas (tests, tenants) must not share one.
        return f"{name}:{self.schema}"

    async def try_session_lock(self, conn: Conn, name: str) -> bool:
        """Take the advisory lock ``name`` for ``conn``'s session, if nobody holds it."""
        return bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self.lock_key(name)))

    async def same_role_sessions(self, pids: Sequence[int], *, conn: Conn | None = None) -> set[int]:
        """Which of the backends ``pids`` are sessions of the same login role as this one's
        (``conn``'s, else the pool's): those whose outbox notices the relay trusts."""
        async with self._using(conn) as c:
            rows = await c.fetch(
                "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND usename = session_user", list(pids)
            )
        return {int(r["pid"]) for r in rows}

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
        conn: Conn | None = None,
    ) -> int:
        """Append ``events`` after ``expected_version`` (``None``: after whatever is there).
        Returns the stream's new version."""
        if not events:
            raise ValueError("nothing to append")
        args = (
            stream_id,
            expected_version,
            [e.event_id for e in events],
            [e.type for e in events],
            [e.data for e in events],
            [e.metadata for e in events],
        )
        try:
            async with self._using(conn) as c:
                rows = await c.fetch(_APPEND, *args)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name and "event_id" in exc.constraint_name:
                raise
            raise ConcurrencyError(stream_id, expected_version) from None
        if not rows:
            raise ConcurrencyError(stream_id, expected_version)
        return int(rows[-1]["version"])

    async def notify_outbox(self, conn: Conn, payload: str = "") -> None:
        """Wake the relay for outbox rows appended in ``conn``'s transaction (delivered at its
        commit, not at all if it rolls back); ``payload`` may carry the rows
        (``outbox_rows.notice``)."""
        await conn.execute("SELECT pg_notify($1, $2)", outbox_channel(self.schema), payload)

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[RecordedEvent]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version",
                stream_id,
                after_version,
            )
        return [_row(r) for r in rows]

    async def read_all(
        self,
        after: Position = START,
        *,
        limit: int = 1000,
        prefix: str | None = None,
        data_as_text: bool = False,
    ) -> list[RecordedEvent]:
        """The log in commit order after ``after``; never skips a late-committing row.
        ``prefix`` keeps only streams whose id starts with it (``saga-``); with
        ``data_as_text`` their data comes as JSON text, not parsed (outbox rows always do)."""
        args: tuple[Any, ...] = (str(after.transaction_id), after.global_position, limit)
        if prefix is not None:
            query = _TAIL_PREFIX_TEXT if data_as_text else _TAIL_PREFIX
            args = (*args, prefix.replace("%", r"\%").replace("_", r"\_") + "%")
        else:
            query = _TAIL_ALL
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query, *args)
        return [_row(r) for r in rows]

    @asynccontextmanager
    async def _using(self, conn: Conn | None) -> AsyncIterator[Conn]:
        """``conn`` when the caller brings one (a session of its own), else a pooled one."""
        if conn is not None:
            yield conn
        else:
            async with self.pool.acquire() as pooled:
                yield pooled

    async def read_outbox_refs(
        self, after: Position, *, limit: int = 1000, conn: Conn | None = None
    ) -> list[OutboxRef]:
        """The outbox rows in commit order after ``after`` (never skipping a late commit, as
        ``read_all``), without their content."""
        async with self._using(conn) as c:
            rows = await c.fetch(_TAIL_OUTBOX_REFS, str(after.transaction_id), after.global_position, limit)
        return [
            OutboxRef(
                Position(r["transaction_id"], r["global_position"]),
                r["event_id"],
                r["recorded_at"],
                r["stream_id"],
                r["type"],
            )
            for r in rows
        ]

    async def outbox_backlog(self, after: Position) -> int:
        """Outbox rows committed after ``after`` (the relay's position): a gauge's reading."""
        async with self.pool.acquire() as conn:
            count = await conn.fetchval(
                f"SELECT count(*) FROM events WHERE stream_id LIKE '{OUTBOX_PREFIX}%'"
                " AND (transaction_id, global_position) > ($1::text::xid8, $2)",
                str(after.transaction_id),
                after.global_position,
            )
        return int(count)

    async def unfinished_outbox(
        self, ended: Sequence[str], upto: Position, also: Sequence[uuid.UUID] = (), *, conn: Conn | None = None
    ) -> list[RecordedEvent]:
        """The outbox rows up to ``upto`` in commit order, and those whose ids are in ``also``,
        of the open correlations whose outbox holds no row of a type in ``ended``, their data
        as JSON text. It reads the open outboxes' rows, not the history (``open_outboxes``);
        entries found ended are dropped."""
        async with self._using(conn) as c:
            rows = await c.fetch(
                _UNFINISHED_OUTBOX, list(ended), str(upto.transaction_id), upto.global_position, list(also)
            )
        return [_row(r) for r in rows]

    async def close_outboxes(self, streams: Sequence[str], *, conn: Conn | None = None) -> None:
        """Drop ``streams`` from the open outboxes: each holds its terminal row, published."""
        async with self._using(conn) as c:
            await c.execute(_CLOSE_OUTBOXES, list(streams))

    async def by_positions(self, positions: Sequence[int], *, conn: Conn | None = None) -> list[RecordedEvent]:
        """Rows by global position, in commit order, their data as JSON text."""
        async with self._using(conn) as c:
            rows = await c.fetch(_BY_POSITIONS, list(positions))
        return [_row(r) for r in rows]

    async def load_position(self, name: str) -> Position:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT transaction_id::text::bigint AS t, global_position AS g"
                " FROM subscription_positions WHERE name = $1",
                name,
            )
        return START if row is None else Position(int(row["t"]), int(row["g"]))

    async def take_checkpoint(self, name: str, *, conn: Conn | None = None) -> Checkpoint:
        """The checkpoint ``name``, with its epoch bumped: from now on only saves made with
        the returned epoch are applied (``save_position``)."""
        async with self._using(conn) as c:
            row = await c.fetchrow(
                "INSERT INTO subscription_positions (name, transaction_id, global_position, epoch)"
                " VALUES ($1, '0'::xid8, 0, 1)"
                " ON CONFLICT (name) DO UPDATE SET epoch = subscription_positions.epoch + 1"
                " RETURNING transaction_id::text::bigint AS t, global_position AS g, published_ahead, epoch",
                name,
            )
        assert row is not None  # an upsert returns its row
        position = Position(int(row["t"]), int(row["g"]))
        return Checkpoint(position, frozenset(row["published_ahead"]), int(row["epoch"]))

    async def forget_position(self, name: str, conn: Conn) -> None:
        await conn.execute("DELETE FROM subscription_positions WHERE name = $1", name)

    async def save_position(self, name: str, position: Position, conn: Conn | None = None) -> None:
        async with self._using(conn) as c:
            await c.execute(
                "INSERT INTO subscription_positions (name, transaction_id, global_position)"
                " VALUES ($1, $2::text::xid8, $3)"
                " ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id,"
                " global_position = excluded.global_position, updated_at = now()",
                name,
                str(position.transaction_id),
                position.global_position,
            )

    async def save_checkpoint(self, name: str, checkpoint: Checkpoint, *, conn: Conn | None = None) -> bool:
        """Save ``checkpoint`` if its epoch is still the current one (nobody has taken the
        checkpoint since); returns whether it was saved."""
        async with self._using(conn) as c:
            status = await c.execute(
                "UPDATE subscription_positions SET transaction_id = $2::text::xid8, global_position = $3,"
                " published_ahead = $4::uuid[], updated_at = now() WHERE name = $1 AND epoch = $5",
                name,
                str(checkpoint.position.transaction_id),
                checkpoint.position.global_position,
                list(checkpoint.published_ahead),
                checkpoint.epoch,
            )
        return bool(status == "UPDATE 1")
