"""A real research saga on sp500 through the five real services, end to end."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.client import follow, stream_tip, submit
from alphasaga_shared.config import Settings
from alphasaga_shared.stack import Stack

from .common import Servers, cleanup


async def saga_times(s: Servers, runs: int = 3) -> dict[str, float]:
    """Seconds from submitting a request on the full sp500 history to SagaCompleted; the
    first run is reported apart (it pays the services' first imports of the data)."""
    ns = f"benche2e{uuid.uuid4().hex[:6]}"
    settings = Settings(
        redis_url=s.redis_url,
        database_url=s.database_url,
        namespace=ns,
        database_schema=f"b_{ns}",
        data_dir=Path(tempfile.mkdtemp(prefix="alphasaga-e2e-")),
    )
    stack = Stack(settings, say=lambda _: None)
    stack.start(timeout=120)
    try:
        redis = aioredis.from_url(s.redis_url)
        times = []
        for _ in range(runs + 1):
            tip = await stream_tip(redis, settings.streams.sagas)
            started = time.perf_counter()
            saga_id = await submit(redis, settings.streams, ResearchRequest(dataset="sp500"))
            outcome = await follow(redis, settings.streams, saga_id, after=tip, timeout_s=300)
            assert isinstance(outcome, sg.SagaCompleted), outcome
            times.append(time.perf_counter() - started)
        await redis.aclose()
        return {"first": times[0], "median": statistics.median(times[1:]), "runs": float(runs)}
    finally:
        stack.stop()
        await cleanup(s, ns, settings.database_schema)


async def saga_rate(s: Servers, at_once: int = 10, rounds: int = 2) -> dict[str, float]:
    """Research sagas per minute with ``at_once`` submitted together on the full sp500
    history (issue #12's throughput figure): one saga first to warm the services, then
    ``rounds`` bursts, each timed from the first submit to the last SagaCompleted."""
    ns = f"benchrate{uuid.uuid4().hex[:6]}"
    settings = Settings(
        redis_url=s.redis_url,
        database_url=s.database_url,
        namespace=ns,
        database_schema=f"b_{ns}",
        data_dir=Path(tempfile.mkdtemp(prefix="alphasaga-rate-")),
    )
    stack = Stack(settings, say=lambda _: None)
    stack.start(timeout=120)
    redis = aioredis.from_url(s.redis_url)

    async def one() -> None:
        tip = await stream_tip(redis, settings.streams.sagas)
        saga_id = await submit(redis, settings.streams, ResearchRequest(dataset="sp500"))
        outcome = await follow(redis, settings.streams, saga_id, after=tip, timeout_s=900)
        assert isinstance(outcome, sg.SagaCompleted), outcome

    try:
        await one()
        rates = []
        for _ in range(rounds):
            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(at_once)))
            rates.append(at_once * 60.0 / (time.perf_counter() - started))
        return {"per_minute": statistics.median(rates), "at_once": float(at_once), "rounds": float(rounds)}
    finally:
        await redis.aclose()
        stack.stop()
        await cleanup(s, ns, settings.database_schema)
        shutil.rmtree(settings.data_dir, ignore_errors=True)
