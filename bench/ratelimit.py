"""The API's rate limiter on each store, in the same run (docs/decisions/0026): Redis (one
MULTI of INCR and EXPIRE), and PostgreSQL (one upsert into an unlogged table), which a
JetStream deployment uses instead of a Redis. Per hit, one caller after another (latency),
and 32 hits in flight at once (throughput), five interleaved rounds, with the load average."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import redis.asyncio as aioredis

from alphasaga_accounts.ratelimits import PostgresCounters
from alphasaga_accounts.store import migrate_accounts
from alphasaga_api.ratelimit import Counters, RateLimiter, RedisCounters
from alphasaga_shared.eventstore import EventStore

from .common import Servers, bench_settings, cleanup, percentile

ROUNDS = 5
SERIAL = 2_000
AT_ONCE = 32
CONCURRENT = 8_000


async def _round(limiter: RateLimiter) -> dict[str, float]:
    times = []
    for i in range(SERIAL):
        started = time.perf_counter()
        await limiter.hit("login", f"198.51.100.{i % 200}", 1_000_000)
        times.append((time.perf_counter() - started) * 1000)
    per_task = CONCURRENT // AT_ONCE

    async def caller(k: int) -> None:
        for _ in range(per_task):
            await limiter.hit("submit", f"key:{k}", 1_000_000)

    started = time.perf_counter()
    await asyncio.gather(*(caller(k) for k in range(AT_ONCE)))
    return {
        "p50": statistics.median(times),
        "p99": percentile(times, 99),
        "per_s": per_task * AT_ONCE / (time.perf_counter() - started),
    }


async def measure(s: Servers) -> dict[str, Any]:
    settings = bench_settings(s)
    redis = aioredis.from_url(s.redis_url, max_connections=AT_ONCE)
    store = await EventStore.connect(s.database_url, settings.database_schema, max_size=AT_ONCE)
    try:
        await migrate_accounts(store.pool, store.schema)

        async def connection() -> aioredis.Redis:
            return redis

        stores: dict[str, Counters] = {
            "redis": RedisCounters(connection, settings.namespace),
            "postgres": PostgresCounters(store.pool),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
        load = []
        for _ in range(ROUNDS):  # interleaved: both see the same machine, round by round
            for name, counters in stores.items():
                runs[name].append(await _round(RateLimiter(counters)))
            load.append(os.getloadavg()[0])
    finally:
        await redis.aclose()
        await store.close()
        await cleanup(s, settings.namespace, settings.database_schema)
    return {
        name: {key: statistics.median(r[key] for r in rounds) for key in ("p50", "p99", "per_s")}
        for name, rounds in runs.items()
    } | {"load": load}


def markdown(r: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.1f}" for x in r["load"])
    out = [
        f"## The API's rate limiter: Redis beside PostgreSQL (median of {ROUNDS} interleaved rounds;"
        f" 1-min load average after each round: {load}; 2 cores)\n",
        f"| store | one hit, p50 | p99 | hits/s, {AT_ONCE} at once |",
        "|---|---:|---:|---:|",
    ]
    for name in ("redis", "postgres"):
        x = r[name]
        out.append(f"| {name} | {x['p50']:.3f} ms | {x['p99']:.3f} ms | {x['per_s']:,.0f} |")
    pg, rd = r["postgres"], r["redis"]
    out.append(f"\nPostgreSQL ÷ Redis: p50 {pg['p50'] / rd['p50']:.0%}, throughput {pg['per_s'] / rd['per_s']:.0%}.\n")
    return "\n".join(out)
