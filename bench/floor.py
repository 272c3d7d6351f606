"""This machine's floor for one saga's I/O: a durable PostgreSQL commit and a Redis round
trip, each timed hot (back to back) and after a 5 ms idle gap, as between the steps of
one saga in flight. Waking an idle server costs more than the work on some machines;
these figures let runs on different machines be compared."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as aioredis

from .common import Servers

IDLE_GAP_S = 0.005


async def _median_ms(op: Callable[[], Awaitable[object]], gap_s: float, n: int = 400) -> float:
    times = []
    for _ in range(n):
        if gap_s:
            await asyncio.sleep(gap_s)
        started = time.perf_counter()
        await op()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[n // 10 :])


async def io_floor(s: Servers) -> dict[str, float]:
    """Median ms of a one-row durable insert and of a Redis PING, hot and after a gap."""
    table = f"bench_floor_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(s.database_url)
    redis = aioredis.from_url(s.redis_url)
    try:
        await conn.execute(f"CREATE TABLE {table} (x int)")

        def insert() -> Awaitable[object]:
            return conn.execute(f"INSERT INTO {table} VALUES (1)")

        def ping() -> Awaitable[object]:
            return redis.ping()

        return {
            "commit hot": await _median_ms(insert, 0),
            "commit after gap": await _median_ms(insert, IDLE_GAP_S),
            "redis hot": await _median_ms(ping, 0),
            "redis after gap": await _median_ms(ping, IDLE_GAP_S),
        }
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
        await redis.aclose()
