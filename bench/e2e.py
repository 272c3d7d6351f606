"""A real research saga on sp500 through the five real services, end to end."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import statistics
import time
from typing import Any

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


# --- research throughput before and after the levers of issue #25 ---------------------

# Before: one sandbox zygote, no look-ahead check reused; after: the defaults.
THROUGHPUT_BUILDS = {
    "before": {"ALPHASAGA_SANDBOX_POOL": "1", "ALPHASAGA_SANDBOX_PROVEN_CHECKS": "0"},
    "after": {},
}


def distinct_requests(n: int) -> list[ResearchRequest]:
    """``n`` distinct requests over the six built-in datasets, their whole histories: each
    its own seed and commission (what a campaign of trials over datasets varies)."""
    from alphasaga_contracts.research import BUILTIN_DATASETS

    return [
        ResearchRequest(dataset=BUILTIN_DATASETS[i % len(BUILTIN_DATASETS)], seed=100 + i, commission_bps=5.0 + i / 10)
        for i in range(n)
    ]


async def _burst(client: AlphaSaga, requests: list[ResearchRequest], timeout_s: float) -> tuple[float, int]:
    """Seconds from submitting ``requests`` at once to the last one's end; how many completed."""
    started = time.perf_counter()
    submitted = await client.submit_many(requests)

    async def end(sub: Any) -> bool:
        events = [u.event async for u in client.follow(sub.saga_id, after=sub.follow_from, timeout_s=timeout_s)]
        return isinstance(events[-1], sg.SagaCompleted)

    completed = sum(await asyncio.gather(*(end(sub) for sub in submitted)))
    return time.perf_counter() - started, completed


async def research_throughput(s: Servers, at_once: int = 40) -> dict[str, dict[str, float]]:
    """Real research sagas per minute, ``at_once`` distinct requests submitted together,
    one process of each service (the sandbox as the machine gives it: bubblewrap here),
    for each build of ``THROUGHPUT_BUILDS`` in turn, in one run. Each stack first runs one
    saga per dataset (imports, data loads), on requests the burst does not repeat."""
    from alphasaga_contracts.research import BUILTIN_DATASETS

    out: dict[str, dict[str, float]] = {}
    for build, env in THROUGHPUT_BUILDS.items():
        settings = stack_settings(s, f"benchtp{build}")
        stack = Stack(settings, say=lambda _: None, extra_env=env)
        stack.start(timeout=180)
        try:
            async with AlphaSaga(settings) as client:
                warm = [ResearchRequest(dataset=d, seed=7, start=dt.date(2005, 1, 3)) for d in BUILTIN_DATASETS]
                await _burst(client, warm, 1800)
                seconds, completed = await _burst(client, distinct_requests(at_once), 1800)
            out[build] = {"per_minute": at_once * 60.0 / seconds, "seconds": seconds, "completed": float(completed)}
        finally:
            stack.stop()
            await cleanup(s, settings.namespace, settings.database_schema)
            shutil.rmtree(settings.data_dir, ignore_errors=True)
    return out


def throughput_markdown(r: dict[str, dict[str, float]], at_once: int = 40) -> str:
    lines = [
        f"## Research throughput: {at_once} distinct real research sagas at once over the six datasets (issue #25)\n",
        "| build | seconds | sagas per minute | completed |",
        "|---|---:|---:|---:|",
    ]
    for build, m in r.items():
        lines.append(f"| {build} | {m['seconds']:.1f} | {m['per_minute']:.1f} | {m['completed']:.0f} |")
    if {"before", "after"} <= set(r):
        lines.append(f"\nafter / before: {r['after']['per_minute'] / r['before']['per_minute']:.2f}\n")
    return "\n".join(lines)
