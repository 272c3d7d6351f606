"""Event-store appends against raw asyncpg inserts of the same rows."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg

from alphasaga_shared.eventstore import Conn, EventStore, NewEvent

from .common import Servers, bench_settings, median_of

RAW_INSERT = (
    "INSERT INTO events (stream_id, version, event_id, type, data, metadata)"
    " SELECT $1, v, e, $3, d::jsonb, '{}'::jsonb FROM unnest($2::int[], $4::text[], $5::uuid[]) AS u(v, d, e)"
)


DATA = {"step": "ml", "attempt": 1, "outputs": {"auc": 0.51}}


async def _ours(store: EventStore, n_tx: int, per_tx: int, connections: int, *, held: bool) -> float:
    """``held``: each worker keeps one connection, as the raw loop does; otherwise a pooled
    connection per transaction, as the orchestrator does."""

    async def appends(k: int, conn: Conn | None) -> None:
        for i in range(k, n_tx, connections):
            events = [NewEvent("Bench", DATA) for _ in range(per_tx)]
            await store.append(f"ours-{i}-{uuid.uuid4().hex}", events, expected_version=0, conn=conn)

    async def worker(k: int) -> None:
        if not held:
            return await appends(k, None)
        async with store.pool.acquire() as conn:
            return await appends(k, conn)

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    return n_tx * per_tx / (time.perf_counter() - started)


async def _raw(pool: asyncpg.Pool, n_tx: int, per_tx: int, connections: int) -> float:
    """The same rows, serialised the same way, with a plain multi-row INSERT."""

    async def worker(k: int) -> None:
        async with pool.acquire() as conn:
            for i in range(k, n_tx, connections):
                await conn.execute(
                    RAW_INSERT,
                    f"raw-{i}-{uuid.uuid4().hex}",
                    list(range(1, per_tx + 1)),
                    "Bench",
                    [json.dumps(DATA) for _ in range(per_tx)],
                    [uuid.uuid4() for _ in range(per_tx)],
                )

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    return n_tx * per_tx / (time.perf_counter() - started)


async def appends(s: Servers, n_tx: int = 2000, runs: int = 3) -> list[dict[str, Any]]:
    settings = bench_settings(s)
    store = await EventStore.connect(s.database_url, settings.database_schema, max_size=8)
    pool = await asyncpg.create_pool(
        s.database_url, min_size=8, max_size=8, server_settings={"search_path": settings.database_schema}
    )
    rows = []
    try:
        for per_tx, connections in ((1, 1), (1, 8), (10, 1), (10, 8)):
            raw = median_of([await _raw(pool, n_tx, per_tx, connections) for _ in range(runs)])
            for held, how in ((True, "connection held"), (False, "pool per transaction")):
                ours = median_of([await _ours(store, n_tx, per_tx, connections, held=held) for _ in range(runs)])
                rows.append(
                    {
                        "what": f"append {per_tx} event(s) per transaction, {connections} connection(s), {how}",
                        "raw": raw,
                        "ours": ours,
                        "unit": "events/s",
                        "ratio": ours / raw,
                    }
                )
    finally:
        await pool.close()
        await store.close()
        conn = await asyncpg.connect(s.database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
        await conn.close()
    return rows
