"""A real research saga on sp500 through the five real services, end to end."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest

from .common import Servers, cleanup, stack_settings


async def run_one(client: AlphaSaga, timeout_s: float) -> None:
    submitted = await client.submit(ResearchRequest(dataset="sp500"))
    ends = [u.event async for u in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=timeout_s)]
    assert isinstance(ends[-1], sg.SagaCompleted), ends[-1]


async def saga_times(s: Servers, runs: int = 3) -> dict[str, float]:
    """Seconds from submitting a request on the full sp500 history to SagaCompleted; the
    first run is reported apart (it pays the services' first imports of the data)."""
    settings = stack_settings(s, "benche2e")
    stack = Stack(settings, say=lambda _: None)
    stack.start(timeout=120)
    try:
        times = []
        async with AlphaSaga(settings) as client:
            for _ in range(runs + 1):
                started = time.perf_counter()
                await run_one(client, 300)
                times.append(time.perf_counter() - started)
        return {"first": times[0], "median": statistics.median(times[1:]), "runs": float(runs)}
    finally:
        stack.stop()
        await cleanup(s, settings.namespace, settings.database_schema)


async def saga_rate(s: Servers, at_once: int = 10, rounds: int = 2) -> dict[str, float]:
    """Research sagas per minute with ``at_once`` submitted together on the full sp500
    history (issue #12's throughput figure): one saga first to warm the services, then
    ``rounds`` bursts, each timed from the first submit to the last SagaCompleted."""
    settings = stack_settings(s, "benchrate")
    stack = Stack(settings, say=lambda _: None)
    stack.start(timeout=120)
    try:
        async with AlphaSaga(settings) as client:
            await run_one(client, 900)
            rates = []
            for _ in range(rounds):
                started = time.perf_counter()
                await asyncio.gather(*(run_one(client, 900) for _ in range(at_once)))
                rates.append(at_once * 60.0 / (time.perf_counter() - started))
        return {"per_minute": statistics.median(rates), "at_once": float(at_once), "rounds": float(rounds)}
    finally:
        stack.stop()
        await cleanup(s, settings.namespace, settings.database_schema)
        shutil.rmtree(settings.data_dir, ignore_errors=True)
