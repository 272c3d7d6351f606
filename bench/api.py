"""The api service under load (issue #16): submits per second and ``GET /v1/sagas/{id}``
latency at 200 concurrent HTTP clients, against a real uvicorn process beside the five
services, and the same calls through the client API in this process, for the ratio.

The clients are bare keep-alive HTTP/1.1 connections: measured first with httpx, its pool
took more CPU than the server (116 requests/s even for /health/live at 200 clients, where
one client got 598/s), so the figures would have been the load generator's."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from alphasaga_cli.stack import SERVICES, WITH_API, Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts.research import ResearchRequest

from .common import Servers, cleanup, percentile, stack_settings

CONCURRENCY = 200
LOAD_PROCESSES = 2
READS = 4000
SUBMITS = 2000


def _summary(latencies: list[float], n: int, took: float) -> dict[str, float]:
    return {"per_s": n / took, "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


async def _callers(
    n: int, concurrency: int, one: Callable[[], Awaitable[Any]], seconds: float | None = None
) -> list[float]:
    """``n`` calls of ``one`` by ``concurrency`` callers; with ``seconds``, none is begun
    after that long (those under way end)."""
    latencies: list[float] = []
    left = n
    until = None if seconds is None else time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal left
        while left > 0 and (until is None or time.perf_counter() < until):
            left -= 1
            begun = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - begun)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies


async def load(n: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """``n`` calls of ``one`` by ``concurrency`` callers at once, in this process."""
    begun = time.perf_counter()
    latencies = await _callers(n, concurrency, one)
    return _summary(latencies, n, time.perf_counter() - begun)


class _Connection:
    """A bare HTTP/1.1 keep-alive connection: httpx's pool costs more CPU than the server
    at 200 clients, so the load generator would measure itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.body = b""  # the last answer's

    async def request(self, head: bytes, body: bytes) -> int:
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        self.body = await self.reader.readexactly(length)
        return int(status_line.split()[1])


def _http_part(url: str, key: str, method: str, path: str, body: Any, n: int, concurrency: int) -> list[float]:
    """One load process's share: its own event loop and ``concurrency`` connections."""
    host = url.removeprefix("http://").split(":")[0]
    payload = json.dumps(body).encode() if body is not None else b""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    return requests_part(url, [head], payload, n, concurrency)


def requests_part(
    url: str,
    heads: list[bytes],
    payload: bytes,
    n: int,
    concurrency: int,
    seconds: float | None = None,
    cap_s: float | None = None,
) -> list[float]:
    """``n`` requests (``heads`` in turn, each with ``payload``) over ``concurrency``
    keep-alive connections to ``url``, on an event loop of their own, begun within
    ``seconds`` if given; their latencies. With ``cap_s``, a request not answered by then
    is given up (its connection replaced) and counted at ``cap_s``."""
    host, port = url.removeprefix("http://").split(":")

    async def go() -> list[float]:
        connections = [_Connection(*await asyncio.open_connection(host, int(port))) for _ in range(concurrency)]
        idle = asyncio.Queue[_Connection]()
        for c in connections:
            idle.put_nowait(c)
        sent = 0

        async def one() -> None:
            nonlocal sent
            head = heads[sent % len(heads)]
            sent += 1
            connection = await idle.get()
            try:
                async with asyncio.timeout(cap_s):
                    status = await connection.request(head, payload)
            except TimeoutError:
                connection.writer.close()
                connections.append(_Connection(*await asyncio.open_connection(host, int(port))))
                idle.put_nowait(connections[-1])
                return
            idle.put_nowait(connection)
            if status >= 400:
                raise RuntimeError(f"{head.split(b' HTTP')[0].decode()}: {status}")

        try:
            latencies = await _callers(n, concurrency, one, seconds)
        finally:
            for c in connections:
                c.writer.close()
        return latencies if cap_s is None else [min(x, cap_s) for x in latencies]

    return asyncio.run(go())


def http_load(url: str, key: str, method: str, path: str, body: Any, n: int) -> dict[str, float]:
    """``n`` requests by ``CONCURRENCY`` clients at once (a keep-alive connection each),
    spread over ``LOAD_PROCESSES`` processes."""
    share = CONCURRENCY // LOAD_PROCESSES
    begun = time.perf_counter()
    with ProcessPoolExecutor(LOAD_PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = [
            pool.submit(_http_part, url, key, method, path, body, n // LOAD_PROCESSES, share)
            for _ in range(LOAD_PROCESSES)
        ]
        latencies = [x for part in parts for x in part.result()]
    return _summary(latencies, len(latencies), time.perf_counter() - begun)


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
    try:
        stack.start()
        found = re.search(r"ready on (http://[\d.]+:\d+)", (stack.log_dir / "api.log").read_text())
        assert found
        url = found.group(1)
        async with AlphaSaga(settings, pool_size=16) as client:
            _, key = await (await client.accounts()).create_key("bench", "admin")
            submitted = await client.submit(ResearchRequest(dataset="sp500", start="2012-01-01"))
            async for _ in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=300):
                pass
            path = f"/v1/sagas/{submitted.saga_id}"
            http_load(url, key, "GET", path, None, 400)  # warm the process and its caches
            reads = http_load(url, key, "GET", path, None, READS)

            async def in_process() -> None:
                await client.detail(submitted.saga_id)

            await load(200, CONCURRENCY, in_process)
            direct = await load(READS, CONCURRENCY, in_process)

            # Submits alone: the orchestrator and workers are stopped, so that the research
            # the submits would start does not compete for the machine's two cores.
            for name in SERVICES:
                proc = stack.processes.pop(name)
                proc.terminate()
                proc.wait(30)
            submits = http_load(url, key, "POST", "/v1/research", {"dataset": "sp500"}, SUBMITS)
            direct_submits = await load(SUBMITS, CONCURRENCY, lambda: client.submit(ResearchRequest(dataset="sp500")))
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
        f"## The HTTP API under load (issue #16): {CONCURRENCY} concurrent clients over {LOAD_PROCESSES} load"
        " processes, one uvicorn process\n",
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
