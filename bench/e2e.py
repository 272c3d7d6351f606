"""A real research saga on sp500 through the five real services, end to end."""

from __future__ import annotations

import statistics
import time

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest

from .common import Servers, cleanup, stack_settings


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
                submitted = await client.submit(ResearchRequest(dataset="sp500"))
                ends = [u.event async for u in client.follow(submitted.saga_id, after=submitted.follow_from)]
                assert isinstance(ends[-1], sg.SagaCompleted), ends[-1]
                times.append(time.perf_counter() - started)
        return {"first": times[0], "median": statistics.median(times[1:]), "runs": float(runs)}
    finally:
        stack.stop()
        await cleanup(s, settings.namespace, settings.database_schema)
