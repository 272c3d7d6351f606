"""Servers, settings and statistics shared by the benchmarks."""

from __future__ import annotations

import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alphasaga_cli.embedded import start_embedded
from alphasaga_shared.config import Settings


@dataclass(frozen=True)
class Servers:
    redis_url: str
    database_url: str


@contextmanager
def servers(*, redis: bool = True) -> Iterator[Servers]:
    """The machine's servers from ALPHASAGA_BENCH_* / ALPHASAGA_TEST_* URLs, else embedded
    ones; ``redis=False`` for a bench that needs PostgreSQL alone (its Redis URL is then "")."""
    redis_url = os.environ.get("ALPHASAGA_BENCH_REDIS_URL") or os.environ.get("ALPHASAGA_TEST_REDIS_URL")
    database_url = os.environ.get("ALPHASAGA_BENCH_DATABASE_URL") or os.environ.get("ALPHASAGA_TEST_DATABASE_URL")
    embedded = None
    if not ((redis_url or not redis) and database_url):
        embedded = start_embedded(
            Path(".alphasaga/bench"), redis=redis and not redis_url, postgres=not database_url, say=_say_for_bench
        )
        redis_url = redis_url or (embedded.redis_url if redis else "")
        database_url = database_url or embedded.database_url
    assert database_url and (redis_url or not redis)
    redis_url = redis_url or ""
    try:
        yield Servers(redis_url, database_url)
    finally:
        if embedded is not None:
            embedded.stop()


def _say_for_bench(line: str) -> None:
    # The embedded servers name the services' variables; the bench reads its own.
    print(line.replace("set ALPHASAGA_", "set ALPHASAGA_BENCH_"))


def bench_settings(s: Servers, **overrides: Any) -> Settings:
    ns = f"bench{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "redis_url": s.redis_url,
        "database_url": s.database_url,
        "namespace": ns,
        "database_schema": f"b_{ns}",
        "consumer": f"bench-{os.getpid()}",
        "block_ms": 100,
    }
    values.update(overrides)
    return Settings(**values)


def stack_settings(s: Servers, prefix: str) -> Settings:
    """Settings for a whole stack of services in a namespace and schema of their own."""
    ns = f"{prefix}{uuid.uuid4().hex[:6]}"
    return Settings(
        redis_url=s.redis_url,
        database_url=s.database_url,
        namespace=ns,
        database_schema=f"b_{ns}",
        data_dir=Path(tempfile.mkdtemp(prefix=f"alphasaga-{prefix}-")),
    )


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def median_of(runs: Sequence[float]) -> float:
    return statistics.median(runs)


async def cleanup(s: Servers, namespace: str, schema: str) -> None:
    """Remove a run's streams, guard keys and schema: benchmarks leave nothing behind."""
    import asyncpg
    import redis.asyncio as aioredis

    redis = aioredis.from_url(s.redis_url)
    batch = [k async for k in redis.scan_iter(match=f"{namespace}:*", count=5000)]
    for i in range(0, len(batch), 5000):
        await redis.delete(*batch[i : i + 5000])
    await redis.aclose()
    conn = await asyncpg.connect(s.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
