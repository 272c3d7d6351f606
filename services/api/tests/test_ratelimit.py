"""The rate limiter on each of its stores, real servers both (docs/decisions/0026): Redis,
and PostgreSQL, which a JetStream deployment uses so that it needs no Redis. Then the api
process on JetStream without a Redis URL, limiting logins; and a store that cannot work
refused at start with one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from alphasaga_accounts.ratelimits import PostgresCounters
from alphasaga_accounts.store import migrate_accounts
from alphasaga_api.ratelimit import WINDOW_S, Counters, RateLimiter, RedisCounters
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore

from .test_process import serving, start


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0 + 15  # 15 s into a window

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["redis", "postgres"])
async def counters(
    request: pytest.FixtureRequest, redis: aioredis.Redis, store: EventStore, namespace: str
) -> Counters:
    if request.param == "redis":

        async def connection() -> aioredis.Redis:
            return redis

        return RedisCounters(connection, namespace)
    await migrate_accounts(store.pool, store.schema)
    return PostgresCounters(store.pool)


async def test_replicas_share_one_count_per_caller_and_window(counters: Counters) -> None:
    clock = Clock()
    # Two replicas of the api: each its own limiter, over the same store.
    a, b = RateLimiter(counters, clock), RateLimiter(counters, clock)
    verdicts = [await (a if i % 2 else b).hit("login", "198.51.100.1", 3) for i in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].retry_after_s == WINDOW_S - 15 + 1
    assert (await a.hit("login", "198.51.100.2", 3)).allowed, "another caller has its own allowance"
    assert (await a.hit("submit", "198.51.100.1", 3)).allowed, "and so has another limit"
    clock.now += WINDOW_S
    assert (await b.hit("login", "198.51.100.1", 3)).allowed, "a new window starts from nothing"


async def test_hits_arriving_together_are_each_counted(counters: Counters) -> None:
    limiter = RateLimiter(counters, Clock())
    verdicts = await asyncio.gather(*(limiter.hit("submit", "key:1", 10) for _ in range(30)))
    assert sum(v.allowed for v in verdicts) == 10


async def test_postgres_keeps_only_the_current_windows(store: EventStore) -> None:
    await migrate_accounts(store.pool, store.schema)
    clock = Clock()
    limiter = RateLimiter(PostgresCounters(store.pool), clock)
    for who in ("a", "b", "c"):
        await limiter.hit("login", who, 5)
    clock.now += WINDOW_S
    await RateLimiter(PostgresCounters(store.pool), clock).hit("login", "a", 5)  # another replica's first hit
    windows = await store.pool.fetch("SELECT window_no, count(*) AS n FROM rate_limits GROUP BY 1")
    assert [(r["window_no"], r["n"]) for r in windows] == [(int(clock.now // WINDOW_S), 1)]


@pytest.mark.parametrize("transport", ["jetstream"])
def test_the_api_on_jetstream_limits_logins_without_redis(
    bus_settings: Settings, bus_env: dict[str, str], tmp_path: Path
) -> None:
    env = {k: v for k, v in bus_env.items() if k != "ALPHASAGA_REDIS_URL"}
    with serving(bus_settings, env, tmp_path / "api.log", ALPHASAGA_API_LOGIN_PER_MINUTE="2") as (_, port):
        codes = [
            httpx.post(f"http://127.0.0.1:{port}/v1/auth/login", json={"username": "x", "password": "y"}, timeout=30)
            for _ in range(5)
        ]
    # Five, so that one window holds three even when they straddle two.
    assert 429 in [r.status_code for r in codes], [r.status_code for r in codes]


def test_redis_named_for_the_limits_without_a_url_exits_2_with_one_line(nats_url: str) -> None:
    done = start(ALPHASAGA_BROKER_URL=nats_url, ALPHASAGA_DATABASE_URL="postgresql://127.0.0.1:1/x",
                 ALPHASAGA_API_RATE_LIMIT_STORE="redis", ALPHASAGA_API_PORT="0")  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr.strip() == (
        "alphasaga-api: ALPHASAGA_REDIS_URL is not set: the API's rate limits are kept in Redis"
        " (ALPHASAGA_API_RATE_LIMIT_STORE=redis)"
    )
