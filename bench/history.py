"""Cost as history grows (issue #32): the same measurements on an empty schema and on one
holding 200,000 finished sagas (``--sagas 1000000`` for a million), in one run, on the same
servers, with one orchestrator (its relay and projector in-process), the simulated
workers that answer at once, and one api process.

The history is written in bulk, the way the store writes it, not through the pipeline:
finished sagas of the empty schema's own run are the templates, and each copy is their
rows as stored (saga events and outbox rows with new ids and the saga id replaced, in
chunks of a few thousand sagas per transaction, so that the commit order holds), their
inbox records and their summaries, spread over the past 30 days; the relay and the
projector are then placed at the end of the log, as they would be in a running
installation, and the relay's sentinel says this Redis has seen it all.

Measured on each schema: burst throughput (sagas submitted at once to the last one
ended), one saga in flight at a time (p50, submit to its end), the projector's lag after
a saga's end (until a list would hold it), ``GET /v1/sagas/{id}`` and a filtered list
through the API, ``replay`` of one saga, the orchestrator's RSS after the bursts, the
relay's catch-up after a restart (outbox rows written while the orchestrator was down,
until all are on the stream), and the relay's re-publish when Redis forgot (which reads
the whole outbox: docs/decisions/0014).

``python -m bench history [--sagas N] [--explain]``; ``--explain`` prints the plans of the
hot queries on the filled schema (docs/decisions/0017)."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from alphasaga_client import AlphaSaga
from alphasaga_contracts.research import ResearchRequest
from alphasaga_readmodel.reader import SagaReader
from alphasaga_readmodel.summaries import COLUMNS
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore.migrations import migrate
from alphasaga_shared.sentinel import sentinel_key

from .api import http_load
from .common import Servers, percentile, stack_settings
from .reads import Stack, Variant
from .saga import ROOT, burst, run_to_end

SAGAS = 200_000
MILLION = 1_000_000
HISTORY_DAYS = 30
SAGAS_PER_TRANSACTION = 5_000
TEMPLATES = 20
WARM_UP = 200
BURSTS = 3
BURST = 1_000
ONE_AT_A_TIME = 40
READS = 400
REPLAYS = 20
RELAY_ROWS = 2_000
REPUBLISH_TIMEOUT_S = 600.0
LIST_PATH = "/v1/sagas?state=COMPLETED&dataset=sp500&limit=50"

Say = Callable[[str], None]
Last = Callable[[asyncpg.Connection, list[uuid.UUID]], Awaitable[None]]


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


def _copy_of(t: Template, saga_id: str, at: dt.datetime) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    """A template's rows and summary as a saga of its own that began at ``at``."""
    events = [
        (stream.replace(t.saga_id, saga_id), version, uuid.uuid4(), typ, data.replace(t.saga_id, saga_id),
         meta.replace(t.saga_id, saga_id), at + offset)
        for stream, version, typ, data, meta, offset in t.rows
    ]  # fmt: skip
    summary = dict(t.summary)
    summary["saga_id"] = uuid.UUID(saga_id)
    summary["updated_at"] = at + (summary["updated_at"] - summary["started_at"])
    summary["started_at"] = at
    for name in ("verdict", "metrics", "saga_state"):
        if summary[name] is not None:
            summary[name] = summary[name].replace(t.saga_id, saga_id)
    return events, tuple(summary[c] for c in COLUMNS)


async def fill(conn: asyncpg.Connection, patterns: Sequence[Template], consumer: str, n: int, say: Say) -> float:
    """Write ``n`` finished sagas into the schema (the search path); returns seconds."""
    began = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    first = now - dt.timedelta(days=HISTORY_DAYS)
    step = dt.timedelta(days=HISTORY_DAYS) / n
    columns = ("stream_id", "version", "event_id", "type", "data", "metadata", "recorded_at")
    for start in range(0, n, SAGAS_PER_TRANSACTION):
        events: list[tuple[Any, ...]] = []
        summaries: list[tuple[Any, ...]] = []
        inbox: list[tuple[str, str]] = []
        for i in range(start, min(n, start + SAGAS_PER_TRANSACTION)):
            t = patterns[i % len(patterns)]
            rows, summary = _copy_of(t, str(uuid.uuid4()), first + step * i)
            events += rows
            summaries.append(summary)
            inbox += [(consumer, str(uuid.uuid4())) for _ in range(t.inbox)]
        async with conn.transaction():
            await conn.copy_records_to_table("events", records=events, columns=columns)
            await conn.copy_records_to_table("saga_summaries", records=summaries, columns=COLUMNS)
            await conn.copy_records_to_table("inbox", records=inbox, columns=("consumer", "message_id"))
        if (start // SAGAS_PER_TRANSACTION) % 10 == 9:
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
    await conn.execute("ANALYZE")
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


async def measure(s: Servers, settings: Settings, say: Say, last: Last) -> dict[str, float]:
    """Every figure on one schema (empty or filled); then ``last`` on that schema (the search
    path), with sagas it ran, before the stack stops and drops it."""
    stack = Stack(s, Variant("history", ROOT), settings=settings, api_processes=1)
    figures: dict[str, float] = {}
    try:
        stack.start()
        await stack.ready()
        async with AlphaSaga(settings, pool_size=8) as client:
            _, key = await (await client.accounts()).create_key("bench", "admin")
            await burst(settings, WARM_UP)
            runs = []
            for _ in range(BURSTS):
                runs.append(BURST / await burst(settings, BURST))
            figures["burst (sagas/s)"] = statistics.median(runs)
            figures["orchestrator RSS after the bursts (MB)"] = _rss_mb(stack.procs[0].pid)
            say(f"bursts {[round(r) for r in runs]} sagas/s")

            reader = SagaReader(await client.saga_store(), poll_s=0.002)
            latencies, lags, ids = [], [], []
            for _ in range(ONE_AT_A_TIME):
                began = time.perf_counter()
                saga_id = await run_to_end(client, ResearchRequest(dataset="sp500"))
                ended = time.perf_counter()
                await reader.caught_up()
                lags.append((time.perf_counter() - ended) * 1000)
                latencies.append((ended - began) * 1000)
                ids.append(saga_id)
            figures["one in flight p50 (ms)"] = percentile(latencies[5:], 50)
            figures["projector lag p50 (ms)"] = percentile(lags[5:], 50)

            url = stack.urls[0]
            one = f"/v1/sagas/{ids[-1]}"
            http_load(url, key, "GET", one, None, 100)  # warm the process
            figures["GET /v1/sagas/{id} p50 (ms)"] = http_load(url, key, "GET", one, None, READS)["p50_ms"]
            figures["GET filtered list p50 (ms)"] = http_load(url, key, "GET", LIST_PATH, None, READS)["p50_ms"]

            replays = []
            for saga_id in ids[-REPLAYS:]:
                began = time.perf_counter()
                await client.replay(saga_id)
                replays.append((time.perf_counter() - began) * 1000)
            figures["replay of one saga p50 (ms)"] = percentile(replays, 50)

            figures["relay catch-up after a restart (s)"] = await _relay_catch_up(stack, client, settings)
            figures["relay re-publish when Redis forgot (s)"] = await _republish(stack, settings)
        conn = await asyncpg.connect(s.database_url)
        try:
            await conn.execute(f'SET search_path TO "{settings.database_schema}"')
            await last(conn, ids)
        finally:
            await conn.close()
        return figures
    finally:
        await stack.stop()


async def _relay_catch_up(stack: Stack, client: AlphaSaga, settings: Settings) -> float:
    """Outbox rows written while the orchestrator (and its relay) was down: seconds from its
    start to the last of them on the orchestrator's stream. Its start-up is in the figure,
    the same on either schema."""
    stack.stop_orchestrator()
    redis = await client.redis()
    stream = settings.streams.commands("orchestrator")
    before = await _stream_length(redis, stream)

    async def record(conn: Any, saga_id: uuid.UUID) -> bool:
        return True

    for _ in range(RELAY_ROWS):
        await client.submit_recorded(ResearchRequest(dataset="sp500"), record)
    began = time.perf_counter()
    stack.start_orchestrator()
    while await _stream_length(redis, stream) < before + RELAY_ROWS:
        if time.perf_counter() - began > REPUBLISH_TIMEOUT_S:
            raise RuntimeError("the relay did not catch up with the outbox: see the orchestrator's log")
        await asyncio.sleep(0.01)
    return time.perf_counter() - began


async def _republish(stack: Stack, settings: Settings) -> float:
    """Seconds from the relay's sentinel vanishing (Redis forgot) to its re-publish logged."""
    log = stack.tmp / "orchestrator-again.log"
    seen = log.read_text(errors="replace").count("re-published")
    redis = aioredis.from_url(stack.s.redis_url)
    try:
        began = time.perf_counter()
        await redis.delete(sentinel_key(settings.namespace))
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
}


async def explain(conn: asyncpg.Connection, saga_id: uuid.UUID) -> str:
    out = []
    for what, sql in EXPLAINED.items():
        args = [str(saga_id)] if "$1" in sql else []
        sql = sql.replace("$1", f"'{saga_id}'") if args else sql
        plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
        out.append(f"-- {what}\n" + "\n".join(r[0] for r in plan))
    return "\n\n".join(out)


async def run(s: Servers, n: int = SAGAS, *, show_plans: bool = False, say: Say = _say) -> dict[str, Any]:
    """The empty schema's figures, then the filled one's; with the fill's size and time."""
    kept: dict[str, Any] = {}

    async def take_templates(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> None:
        kept["templates"], kept["consumer"] = await templates(conn, TEMPLATES)

    async def take_plans(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> None:
        kept["plans"] = await explain(conn, ids[-1]) if show_plans else ""

    say("empty schema: measuring")
    empty = await measure(s, stack_settings(s, "hist0"), say, take_templates)
    full_settings = stack_settings(s, "histn")
    conn = await asyncpg.connect(s.database_url)
    try:
        await migrate(conn, full_settings.database_schema)
        await conn.execute(f'SET search_path TO "{full_settings.database_schema}"')
        say(f"filling {n:,} sagas")
        fill_s = await fill(conn, kept["templates"], kept["consumer"], n, say)
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
    say("filled schema: measuring")
    full = await measure(s, full_settings, say, take_plans)
    return {"sagas": n, "events": events, "size": size, "fill_s": fill_s, "empty": empty, "full": full,
            "plans": kept["plans"]}  # fmt: skip


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
        lines.append(f"| {what} | {empty:,.1f} | {full:,.1f} | {full / empty:.0%} |")
    if r["plans"]:
        lines += ["", "```", r["plans"], "```"]
    return "\n".join(lines) + "\n"


def options(argv: Sequence[str]) -> tuple[int, bool]:
    n = SAGAS
    if "--million" in argv:
        n = MILLION
    if "--sagas" in argv:
        n = int(argv[list(argv).index("--sagas") + 1])
    return n, "--explain" in argv
