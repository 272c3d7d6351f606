"""The api service under load (issue #16): submits per second and ``GET /v1/sagas/{id}``
latency at 200 concurrent HTTP clients, against a real uvicorn process beside the five
services, and the same reads through the client API in this process, for the ratio."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from alphasaga_cli.stack import SERVICES, WITH_API, Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts.research import ResearchRequest

from .common import Servers, cleanup, percentile, stack_settings

CONCURRENCY = 200
READS = 4000
SUBMITS = 2000


async def load(n: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """``n`` calls of ``one`` by ``concurrency`` callers at once: rate and latency percentiles."""
    latencies: list[float] = []
    left = n

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            begun = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - begun)

    begun = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    took = time.perf_counter() - begun
    return {
        "per_s": n / took,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def measure(s: Servers) -> dict[str, dict[str, float]]:
    settings = stack_settings(s, "benchapi")
    stack = Stack(
        settings,
        say=lambda _: None,
        services=WITH_API,
        extra_env={
            "ALPHASAGA_API_PORT": "0",
            "ALPHASAGA_API_HOST": "127.0.0.1",
            "ALPHASAGA_API_SUBMIT_PER_MINUTE": "1000000",
            "ALPHASAGA_API_SUBMIT_IP_PER_MINUTE": "1000000",
        },
    )
    stack.start()
    try:
        found = re.search(r"ready on (http://[\d.]+:\d+)", (stack.log_dir / "api.log").read_text())
        assert found
        url = found.group(1)
        async with AlphaSaga(settings, pool_size=16) as client:
            _, key = await (await client.accounts()).create_key("bench", "admin")
            submitted = await client.submit(ResearchRequest(dataset="sp500", start="2012-01-01"))
            async for _ in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=300):
                pass
            saga = str(submitted.saga_id)
            limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:

                async def read() -> None:
                    (await http.get(f"/v1/sagas/{saga}")).raise_for_status()

                await load(200, CONCURRENCY, read)  # warm the connections and the process
                reads = await load(READS, CONCURRENCY, read)

                async def in_process() -> None:
                    await client.detail(saga)

                await load(200, CONCURRENCY, in_process)
                direct = await load(READS, CONCURRENCY, in_process)

                # Submits alone: the orchestrator and workers are stopped, so that the research
                # the submits would start does not compete for the machine's two cores.
                for name in SERVICES:
                    proc = stack.processes.pop(name)
                    proc.terminate()
                    proc.wait(30)

                async def submit() -> None:
                    (await http.post("/v1/research", json={"dataset": "sp500"})).raise_for_status()

                submits = await load(SUBMITS, CONCURRENCY, submit)
                direct_submits = await load(
                    SUBMITS, CONCURRENCY, lambda: client.submit(ResearchRequest(dataset="sp500"))
                )
        return {
            "GET /v1/sagas/{id}": reads,
            "client.detail() in-process": direct,
            "POST /v1/research": submits,
            "client.submit() in-process": direct_submits,
        }
    finally:
        stack.stop()
        await cleanup(s, settings.namespace, settings.database_schema)


def markdown(results: dict[str, dict[str, float]]) -> str:
    lines = [
        f"## The HTTP API under load (issue #16): {CONCURRENCY} concurrent clients, one uvicorn process\n",
        "| what | per second | p50 | p99 |",
        "|---|---:|---:|---:|",
    ]
    for what, r in results.items():
        lines.append(f"| {what} | {r['per_s']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |")
    reads, direct = results["GET /v1/sagas/{id}"], results["client.detail() in-process"]
    submits, direct_submits = results["POST /v1/research"], results["client.submit() in-process"]
    lines.append(
        f"\nAPI / in-process: reads {reads['per_s'] / direct['per_s']:.0%}, "
        f"submits {submits['per_s'] / direct_submits['per_s']:.0%}\n"
    )
    return "\n".join(lines)
