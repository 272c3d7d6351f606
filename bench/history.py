"""Cost as history grows (issue #32): the same measurements on an empty schema and on one
holding 200,000 finished sagas (``--sagas 1000000`` for a million), in one run, on the same
servers, with one orchestrator (its relay and projector in-process), the simulated
workers that answer at once, and one api process.

The history is written in bulk, the way the store writes it, not through the pipeline:
finished sagas of the empty schema's own run are the templates, and each copy is their
rows as stored (saga events and outbox rows with new ids and the saga id replaced, in
chunks of a thousand sagas per transaction, so that the commit order holds), their
inbox records and their summaries, spread over the past 30 days; the relay and the
projector are then placed at the end of the log, as they would be in a running
installation, and the relay's sentinel says this Redis has seen it all.

Measured on each schema: burst throughput (sagas submitted at once to the last one
ended), one saga in flight at a time (p50, submit to its end), the projector's lag after
a saga's end (until a list would hold it), ``GET /v1/sagas/{id}`` and a filtered list
through the API, ``replay`` of one saga, the orchestrator's RSS after the bursts, the
relay's catch-up after a restart (outbox rows written while the orchestrator was down,
until all are on the stream), and the relay's re-publish when Redis forgot (which reads
the open outboxes: docs/decisions/0014, 0028).

``python -m bench history [--sagas N] [--explain]``; ``--explain`` prints the plans of the
hot queries on the filled schema (docs/decisions/0017)."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from alphasaga_client import AlphaSaga
from alphasaga_contracts.research import ResearchRequest
from alphasaga_contracts.saga import terminal_event_types
from alphasaga_readmodel.reader import SagaReader
from alphasaga_readmodel.store import _list_statement as list_statement  # the statement, for its plans
from alphasaga_readmodel.summaries import COLUMNS, SagaFilter
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import OUTBOX_PREFIX
from alphasaga_shared.eventstore.migrations import migrate
from alphasaga_shared.sentinel import sentinel_key

from .api import _Connection
from .common import Servers, percentile, stack_settings
from .reads import Stack, Variant
from .saga import ROOT, burst, lifecycle_cursor, run_to_end, until_ended

SAGAS = 200_000
MILLION = 1_000_000
HISTORY_DAYS = 30
# A transaction of the fill holds back the oldest running transaction of the whole server,
# and with it every log tail (projectors, relays) of every schema on it: kept to a second or
# two. On a server shared with others' work, give the bench servers of its own
# (ALPHASAGA_BENCH_DATABASE_URL).
SAGAS_PER_TRANSACTION = 1_000
TEMPLATES = 20


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does; ``SHORT`` (``--short``) shows the bench works."""

    warm_up: int = 200
    bursts: int = 3
    burst: int = 1_000
    one_at_a_time: int = 40
    reads: int = 400  # of each, one at a time
    replays: int = 20
    relay_rows: int = 2_000
    restarts: int = 3  # of each orchestrator, in turn


FULL = Sizes()
SHORT = Sizes(warm_up=50, bursts=2, burst=100, one_at_a_time=10, reads=40, replays=5, relay_rows=200, restarts=1)
REPUBLISH_TIMEOUT_S = 600.0
LIST_PATH = "/v1/sagas?state=COMPLETED&dataset=sp500&limit=50"

Say = Callable[[str], None]


def _say(line: str) -> None:
    print(f"  [history {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# --- the templates and the bulk fill ----------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One finished saga as stored: its rows (saga events and outbox rows, in commit
    order), its summary, and how many inbox records it left."""

    saga_id: str
    rows: list[tuple[str, int, str, str, str, dt.timedelta]]  # stream, version, type, data, metadata, offset
    summary: dict[str, Any]
    inbox: int


async def templates(conn: asyncpg.Connection, n: int) -> tuple[list[Template], str]:
    """``n`` completed sagas of a schema (the search path), and the consumer of its inbox."""
    summaries = await conn.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM saga_summaries WHERE state = 'COMPLETED' ORDER BY started_at LIMIT $1", n
    )
    consumer = await conn.fetchval("SELECT consumer FROM inbox GROUP BY consumer ORDER BY count(*) DESC LIMIT 1")
    per_saga = await conn.fetchval(
        "SELECT count(*)::float8 / greatest(1, (SELECT count(*) FROM saga_summaries)) FROM inbox"
    )
    found = []
    for s in summaries:
        saga_id = str(s["saga_id"])
        rows = await conn.fetch(
            "SELECT stream_id, version, type, data::text AS data, metadata::text AS metadata, recorded_at FROM events"
            " WHERE stream_id = ANY($1::text[]) ORDER BY transaction_id, global_position",
            [f"saga-{saga_id}", f"outbox:{saga_id}"],
        )
        began = rows[0]["recorded_at"]
        found.append(
            Template(
                saga_id,
                [
                    (r["stream_id"], r["version"], r["type"], r["data"], r["metadata"], r["recorded_at"] - began)
                    for r in rows
                ],
                dict(s),
                round(per_saga),
            )
        )
    if not found:
        raise RuntimeError("no completed saga in the empty schema's run to copy as history")
    return found, str(consumer)


async def fill(conn: asyncpg.Connection, patterns: Sequence[Template], consumer: str, n: int, say: Say) -> float:
    """Write ``n`` finished sagas into the schema (the search path); returns seconds. The
    copies are made by the server from the templates (``INSERT … SELECT``, a thousand
    sagas per transaction), which spares a round trip of every row through this process."""
    began = time.perf_counter()
    await conn.execute(
        "CREATE TEMP TABLE tpl_rows (n int, ord int, saga text, stream_id text, version int, type text, data text,"
        " metadata text, off interval)"
    )
    await conn.execute("CREATE TEMP TABLE tpl_summaries (n int, LIKE saga_summaries)")
    await conn.copy_records_to_table(
        "tpl_rows",
        records=[(k, o, t.saga_id, *row) for k, t in enumerate(patterns) for o, row in enumerate(t.rows)],
    )
    await conn.copy_records_to_table(
        "tpl_summaries", records=[(k, *(t.summary[c] for c in COLUMNS)) for k, t in enumerate(patterns)],
        columns=("n", *COLUMNS),
    )  # fmt: skip
    moved = {
        "saga_id": "c.id::uuid",
        "started_at": "c.at",
        "updated_at": "c.at + (t.updated_at - t.started_at)",
        **{j: f"replace(t.{j}::text, t.saga_id::text, c.id)::jsonb" for j in ("verdict", "metrics", "saga_state")},
    }
    summaries = ", ".join(moved.get(c, f"t.{c}") for c in COLUMNS)
    first = dt.datetime.now(dt.UTC) - dt.timedelta(days=HISTORY_DAYS)
    step = dt.timedelta(days=HISTORY_DAYS) / n
    inbox_per_saga = patterns[0].inbox
    for start in range(0, n, SAGAS_PER_TRANSACTION):
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE chunk ON COMMIT DROP AS SELECT i, gen_random_uuid()::text AS id,"
                " i % $3 AS n, $4::timestamptz + $5::interval * i AS at FROM generate_series($1::int, $2::int) AS i",
                start, min(n, start + SAGAS_PER_TRANSACTION) - 1, len(patterns), first, step,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO events (stream_id, version, event_id, type, data, metadata, recorded_at)"
                " SELECT replace(t.stream_id, t.saga, c.id), t.version, gen_random_uuid(), t.type,"
                " replace(t.data, t.saga, c.id)::jsonb, replace(t.metadata, t.saga, c.id)::jsonb, c.at + t.off"
                " FROM chunk c JOIN tpl_rows t ON t.n = c.n ORDER BY c.i, t.ord"
            )
            # Every copy is finished: its outbox is closed, as the relay closes one when it
            # passes its end (the re-publish reads the open ones: docs/decisions/0028).
            await conn.execute(
                f"DELETE FROM open_outboxes WHERE stream_id IN (SELECT '{OUTBOX_PREFIX}' || id FROM chunk)"
            )
            await conn.execute(
                f"INSERT INTO saga_summaries ({', '.join(COLUMNS)})"
                f" SELECT {summaries} FROM chunk c JOIN tpl_summaries t ON t.n = c.n ORDER BY c.i"
            )
            await conn.execute(
                "INSERT INTO inbox (consumer, message_id) SELECT $1, gen_random_uuid()::text"
                " FROM chunk, generate_series(1, $2::int)",
                consumer, inbox_per_saga,
            )  # fmt: skip
        if (start // SAGAS_PER_TRANSACTION) % 50 == 49:
            say(f"{start + SAGAS_PER_TRANSACTION:,} sagas written ({time.perf_counter() - began:.0f} s)")
    # The relay and the projector stand at the end of the log, as in a running installation.
    await conn.execute(
        "INSERT INTO subscription_positions (name, transaction_id, global_position)"
        " SELECT name, e.transaction_id, e.global_position FROM (VALUES ('relay:outbox'),"
        " ('projection:saga_summaries')) AS n(name),"
        " (SELECT transaction_id, global_position FROM events ORDER BY transaction_id DESC, global_position DESC"
        " LIMIT 1) AS e"
        " ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id,"
        " global_position = excluded.global_position"
    )
    await conn.execute("ANALYZE events, saga_summaries, inbox, subscription_positions")
    return time.perf_counter() - began


# --- the measurements ---------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    with Path(f"/proc/{pid}/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _stream_length(redis: Any, stream: str) -> int:
    return int(await redis.xlen(stream))


@dataclass
class Side:
    """One schema's running stack and a client of it."""

    name: str
    stack: Stack
    client: AlphaSaga
    key: str = ""
    ids: list[uuid.UUID] = field(default_factory=list)
    figures: dict[str, list[float]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        settings: Settings = self.stack.settings
        return settings

    def add(self, what: str, *values: float) -> None:
        self.figures.setdefault(what, []).extend(values)


@asynccontextmanager
async def running(s: Servers, name: str, settings: Settings, sizes: Sizes) -> AsyncIterator[Side]:
    """A stack on ``settings``' schema (dropped when it stops), warmed up."""
    stack = Stack(s, Variant("history", ROOT), settings=settings, api_processes=1)
    try:
        stack.start()
        await stack.ready()
        async with AlphaSaga(settings, pool_size=8) as client:
            side = Side(name, stack, client)
            _, side.key = await (await client.accounts()).create_key("bench", "admin")
            await burst(settings, sizes.warm_up)
            yield side
    finally:
        await stack.stop()


async def measure(sides: Sequence[Side], sizes: Sizes, say: Say) -> None:
    """Every figure, each taken on one side then the other in turn, so that the load of the
    machine's other work falls on both alike."""
    for _ in range(sizes.bursts):
        for side in sides:
            side.add("burst (sagas/s)", sizes.burst / await burst(side.settings, sizes.burst))
    for side in sides:
        side.add("orchestrator RSS after the bursts (MB)", _rss_mb(side.stack.procs[0].pid))
        say(f"{side.name}: bursts {[round(r) for r in side.figures['burst (sagas/s)']]} sagas/s")
    for _ in range(sizes.one_at_a_time // 5):
        for side in sides:
            await _one_at_a_time(side, 5)
    for _ in range(4):
        for side in sides:
            url, one = side.stack.urls[0], f"/v1/sagas/{side.ids[-1]}"
            side.add("GET /v1/sagas/{id} p50 (ms)", *await _gets(url, side.key, one, sizes.reads // 4))
            side.add("GET filtered list p50 (ms)", *await _gets(url, side.key, LIST_PATH, sizes.reads // 4))
    for saga_id in range(sizes.replays):
        for side in sides:
            began = time.perf_counter()
            await side.client.replay(side.ids[saga_id % len(side.ids)])
            side.add("replay of one saga p50 (ms)", (time.perf_counter() - began) * 1000)
    for _ in range(sizes.restarts):
        for side in sides:
            start_up, tail = await _relay_catch_up(side, sizes.relay_rows)
            side.add("relay catch-up after a restart (s)", start_up + tail)
            side.add("- of which start to its first row on the stream (s)", start_up)
            side.add("- of which its first row to the last (s)", tail)
            say(f"{side.name}: relay caught up ({start_up:.2f} s + {tail:.2f} s)")
    for side in sides:
        side.add("relay re-publish when Redis forgot (s)", await _republish(side))
        say(f"{side.name}: relay re-published")


async def _gets(url: str, key: str, path: str, n: int) -> list[float]:
    """n GETs one after the other on one keep-alive connection, in ms (the first, which
    opens the connection, left out): a read's own time, not a queue's."""
    host, port = url.removeprefix("http://").split(":")
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Length: 0\r\n\r\n"
    reader, writer = await asyncio.open_connection(host, int(port))
    connection, times = _Connection(reader, writer), []
    try:
        for _ in range(n + 1):
            began = time.perf_counter()
            if (status := await connection.request(head.encode(), b"")) != 200:
                raise RuntimeError(f"GET {path}: {status} {connection.body[:300]!r}")
            times.append((time.perf_counter() - began) * 1000)
    finally:
        writer.close()
    return times[1:]


async def _one_at_a_time(side: Side, n: int) -> None:
    """n sagas one at a time: submit to end, and the projector's lag after each end."""
    reader = SagaReader(await side.client.saga_store(), poll_s=0.002)
    for _ in range(n):
        began = time.perf_counter()
        saga_id = await run_to_end(side.client, ResearchRequest(dataset="sp500"))
        ended = time.perf_counter()
        await reader.caught_up()
        side.add("projector lag p50 (ms)", (time.perf_counter() - ended) * 1000)
        side.add("one in flight p50 (ms)", (ended - began) * 1000)
        side.ids.append(saga_id)


async def _relay_catch_up(side: Side, rows: int) -> tuple[float, float]:
    """Outbox rows written while the orchestrator (and its relay) was down: seconds from its
    start to the first of them on the orchestrator's stream (the process's start-up: imports,
    connections, the relay's lock and checkpoint), and from the first to the last (the
    relay's tail reading and publishing them)."""
    stack, client = side.stack, side.client
    stack.stop_orchestrator()
    redis = await client.redis()
    stream = side.settings.streams.commands("orchestrator")
    before = await _stream_length(redis, stream)
    transport = await client.transport()
    lifecycle = await lifecycle_cursor(transport, side.settings.streams.sagas)

    async def record(conn: Any, saga_id: uuid.UUID) -> bool:
        return True

    for _ in range(rows):
        await client.submit_recorded(ResearchRequest(dataset="sp500"), record)
    began = time.perf_counter()
    first = 0.0
    stack.start_orchestrator()
    while (length := await _stream_length(redis, stream)) < before + rows:
        if time.perf_counter() - began > REPUBLISH_TIMEOUT_S:
            raise RuntimeError("the relay did not catch up with the outbox: see the orchestrator's log")
        if length > before and not first:
            first = time.perf_counter()
        await asyncio.sleep(0.01)
    ended = time.perf_counter()
    first = first or ended
    await until_ended(transport, side.settings.streams.sagas, lifecycle, rows)  # not on the other side's time
    return first - began, ended - first


async def _republish(side: Side) -> float:
    """Seconds from the relay's sentinel vanishing (Redis forgot) to its re-publish logged."""
    log = side.stack.tmp / "orchestrator-again.log"
    seen = log.read_text(errors="replace").count("re-published")
    redis = aioredis.from_url(side.stack.s.redis_url)
    try:
        began = time.perf_counter()
        await redis.delete(sentinel_key(side.settings.namespace))
        while log.read_text(errors="replace").count("re-published") == seen:
            if time.perf_counter() - began > REPUBLISH_TIMEOUT_S:
                raise RuntimeError("the relay did not re-publish after its sentinel vanished")
            await asyncio.sleep(0.05)
        return time.perf_counter() - began
    finally:
        await redis.aclose()


# --- the run --------------------------------------------------------------------------------

EXPLAINED = {
    "a saga's status (its row and newest version)": (
        "SELECT (SELECT max(version) FROM events WHERE stream_id = 'saga-' || $1) AS latest, s.* FROM (SELECT 1) AS one"
        " LEFT JOIN (SELECT * FROM saga_summaries WHERE saga_id = $1::uuid) AS s ON true"
    ),
    "a filtered list, first page": (
        "SELECT * FROM saga_summaries WHERE state = 'COMPLETED' AND dataset = 'sp500'"
        " ORDER BY started_at DESC, saga_id DESC LIMIT 50"
    ),
    "a saga's events (replay, a load without snapshot)": (
        "SELECT * FROM events WHERE stream_id = 'saga-' || $1 ORDER BY version"
    ),
    "the saga log's head (a list waits for the projector to pass it)": (
        "SELECT transaction_id, global_position FROM events WHERE stream_id LIKE 'saga-%'"
        " ORDER BY transaction_id DESC, global_position DESC LIMIT 1"
    ),
    "the relay's tail past its position": (
        "SELECT * FROM events WHERE stream_id LIKE 'outbox:%' AND (transaction_id, global_position) >"
        " (SELECT transaction_id, global_position FROM subscription_positions WHERE name = 'relay:outbox')"
        " ORDER BY transaction_id, global_position LIMIT 500"
    ),
    "due timers": "SELECT * FROM saga_timers WHERE due_at <= now() ORDER BY due_at LIMIT 200",
    # What the relay re-publishes when Redis forgot, as it was before docs/decisions/0028
    # (every outbox row, each stream probed for its end) and as it is (the open outboxes).
    "the re-publish when Redis forgot, before 0028 (the whole outbox)": (
        "SELECT * FROM events o WHERE o.stream_id LIKE 'outbox:%' AND (o.transaction_id, o.global_position) <="
        " (SELECT transaction_id, global_position FROM subscription_positions WHERE name = 'relay:outbox')"
        " AND NOT EXISTS (SELECT 1 FROM events t WHERE t.stream_id = o.stream_id AND t.type = ANY($ENDED))"
        " ORDER BY o.transaction_id, o.global_position"
    ),
    "the re-publish when Redis forgot (the open outboxes)": (
        "WITH stale AS (DELETE FROM open_outboxes w WHERE EXISTS (SELECT 1 FROM events t"
        " WHERE t.stream_id = w.stream_id AND t.type = ANY($ENDED))"
        " OR NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = w.stream_id) RETURNING w.stream_id)"
        " SELECT o.* FROM open_outboxes w JOIN events o ON o.stream_id = w.stream_id"
        " WHERE w.stream_id NOT IN (SELECT stream_id FROM stale) AND (o.transaction_id, o.global_position) <="
        " (SELECT transaction_id, global_position FROM subscription_positions WHERE name = 'relay:outbox')"
        " ORDER BY o.transaction_id, o.global_position"
    ),
}


# The saga list's statement as the read model runs it: the first page of two filters, a
# filter that matches no saga of the history, and a page deep in the history.
LISTS = {
    "first page, state and dataset": SagaFilter(state="COMPLETED", dataset="sp500", limit=50),
    "a state no saga of the history is in": SagaFilter(state="ROLLED_BACK", limit=50),
}


def _literal(value: Any) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


async def explain(conn: asyncpg.Connection, saga_id: uuid.UUID) -> str:
    out = []
    middle = await conn.fetchrow(
        "SELECT started_at, saga_id FROM saga_summaries ORDER BY started_at DESC, saga_id DESC OFFSET"
        " (SELECT count(*) / 2 FROM saga_summaries) LIMIT 1"
    )
    assert middle is not None
    lists = {**LISTS, "a page half way down": SagaFilter(limit=50, after=(middle["started_at"], middle["saga_id"]))}
    for n, (what, where) in enumerate(lists.items()):
        sql, args = list_statement(where)
        await conn.execute(f"PREPARE list_{n} AS {sql}")
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            plan = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE list_{n}({', '.join(map(_literal, args))})"
            )
            out.append(f"-- the saga list, {what}: {mode}\n" + "\n".join(r[0] for r in plan))
    await conn.execute("RESET plan_cache_mode")
    for what, sql in EXPLAINED.items():
        args = [str(saga_id)] if "$1" in sql else []
        sql = sql.replace("$1", f"'{saga_id}'") if args else sql
        sql = sql.replace("$ENDED", "ARRAY[" + ", ".join(map(_literal, sorted(terminal_event_types()))) + "]")
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
        out.append(f"-- {what}\n" + "\n".join(r[0] for r in plan))
    return "\n\n".join(out)


async def run(
    s: Servers, n: int = SAGAS, *, sizes: Sizes = FULL, show_plans: bool = False, say: Say = _say
) -> dict[str, Any]:
    """The figures of an empty schema and of one filled with ``n`` finished sagas, taken in
    turn; with the fill's size and time, and the plans of the hot queries."""
    empty_settings, full_settings = stack_settings(s, "hist0"), stack_settings(s, "histn")
    async with running(s, "empty", empty_settings, sizes) as empty:
        conn = await asyncpg.connect(s.database_url)
        try:
            await conn.execute(f'SET search_path TO "{empty_settings.database_schema}"')
            patterns, consumer = await templates(conn, TEMPLATES)
            await migrate(conn, full_settings.database_schema)
            await conn.execute(f'SET search_path TO "{full_settings.database_schema}"')
            say(f"filling {n:,} sagas")
            fill_s = await fill(conn, patterns, consumer, n, say)
            events = await conn.fetchval("SELECT count(*) FROM events")
            size = await conn.fetchval(
                "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
                full_settings.database_schema,
            )
            say(f"filled in {fill_s:.0f} s: {events:,} events, {size}")
        finally:
            await conn.close()
        await _sentinel_seen(s, full_settings)
        async with running(s, "history", full_settings, sizes) as full:
            say("measuring, the two schemas in turn")
            await measure([empty, full], sizes, say)
            plans = ""
            if show_plans:
                conn = await asyncpg.connect(s.database_url)
                try:
                    await conn.execute(f'SET search_path TO "{full_settings.database_schema}"')
                    plans = await explain(conn, full.ids[-1])
                finally:
                    await conn.close()
    return {
        "sagas": n,
        "events": events,
        "size": size,
        "fill_s": fill_s,
        "empty": {what: _summary(what, v) for what, v in empty.figures.items()},
        "full": {what: _summary(what, v) for what, v in full.figures.items()},
        "plans": plans,
    }


def _summary(what: str, values: list[float]) -> float:
    """A figure's value over its runs: the median, or the 50th percentile where it says p50
    (the first five one-at-a-time sagas of each side, warming up, included: they are few)."""
    return percentile(values, 50) if "p50" in what else statistics.median(values)


async def _sentinel_seen(s: Servers, settings: Settings) -> None:
    """The relay's sentinel names this Redis: the history was published to it."""
    redis = aioredis.from_url(s.redis_url)
    try:
        info = await redis.info("server")
        await redis.set(sentinel_key(settings.namespace), str(info["run_id"]))
    finally:
        await redis.aclose()


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"## Cost as history grows (issue #32): an empty schema beside {r['sagas']:,} finished sagas"
        f" ({r['events']:,} events, {r['size']}, written in {r['fill_s']:.0f} s)\n",
        "| what | empty | with history | history / empty |",
        "|---|---:|---:|---:|",
    ]
    for what, empty in r["empty"].items():
        full = r["full"][what]
        ratio = f"{full / empty:.0%}" if empty else "n/a"  # a part that took no time on either
        lines.append(f"| {what} | {empty:,.2f} | {full:,.2f} | {ratio} |")
    if r["plans"]:
        lines += ["", "```", r["plans"], "```"]
    return "\n".join(lines) + "\n"


def options(argv: Sequence[str]) -> tuple[int, Sizes, bool]:
    """``--million`` or ``--sagas N`` (default 200,000), ``--short``, ``--explain``."""
    n, sizes = SAGAS, FULL
    if "--short" in argv:
        n, sizes = 2_000, SHORT
    if "--million" in argv:
        n = MILLION
    if "--sagas" in argv:
        n = int(argv[list(argv).index("--sagas") + 1])
    return n, sizes, "--explain" in argv
