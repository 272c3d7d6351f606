"""What observability costs (issue #14), measured in one run:

* tracing: saga throughput (a burst submitted at once) and the one-in-flight p50 of the
  orchestrator with the simulated workers (bench/saga.py's stack), tracing off against
  every span exported over OTLP/HTTP to a real receiver (tests/support/otlp.py), and
  against tracing set up with a sample ratio of 0;
* metrics: bus consumer throughput (bench/bus.py's batches of 100) with nothing
  scraping, against Prometheus's request every second on the service's own /metrics
  (the ASGI app in the consumer's event loop, the stream collector reading Redis).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import urllib.request
from typing import Any

import redis.asyncio as aioredis

from alphasaga_shared.health import HealthServer
from tests.support.otlp import OtlpReceiver

from . import bus, saga
from .common import Servers, bench_settings, percentile

ROUNDS = 5


async def tracing_cost(s: Servers, n: int = 500, one_by_one: int = 60) -> dict[str, Any]:
    """Medians of ``ROUNDS`` alternated rounds, so that drift hits both sides alike."""
    sides = ("off", "on", "sampled out")
    out: dict[str, Any] = {side: {"rate": [], "p50": []} for side in sides}
    with OtlpReceiver() as receiver:
        exported = {"ALPHASAGA_OTLP_ENDPOINT": receiver.endpoint}
        # Instrumented and exporting, but no saga sampled: what the instrumentation costs.
        unsampled = {**exported, "ALPHASAGA_TRACE_SAMPLE_RATIO": "0"}
        for _ in range(ROUNDS):
            for side, env in zip(sides, ({}, exported, unsampled), strict=True):
                out[side]["rate"].append(await saga.throughput(s, 1, n, extra_env=env))
                out[side]["p50"].append(percentile(await saga.latency(s, one_by_one, extra_env=env), 50))
        out["spans"] = len(receiver.all())
    for side in sides:
        out[side] = {k: statistics.median(v) for k, v in out[side].items()}
    return out


def _scrape_every_second(url: str, stop: threading.Event, counts: list[int]) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
        counts.append(1)


async def _consume(s: Servers, n: int, *, scraped: bool) -> tuple[float, int]:
    settings = bench_settings(s)
    redis = aioredis.from_url(s.redis_url)
    stream = f"{settings.namespace}:cmd:bench"
    health = HealthServer({})
    port = await health.start("127.0.0.1", 0)
    stop, counts = threading.Event(), list[int]()
    scraper = threading.Thread(
        target=_scrape_every_second, args=(f"http://127.0.0.1:{port}/metrics", stop, counts), daemon=True
    )
    try:
        await bus.fill(redis, stream, n)
        if scraped:
            scraper.start()
        rate = await bus.bus_consume(settings, stream, n, 100)
    finally:
        stop.set()
        if scraper.is_alive():
            scraper.join()
        await health.stop()
        await redis.delete(stream)
        await redis.aclose()
    return rate, len(counts)


async def metrics_overhead(s: Servers, n: int = 300_000) -> dict[str, float]:
    """Bus throughput with and without a scrape every second (alternated rounds)."""
    quiet, scraped, scrapes = [], [], []
    for _ in range(ROUNDS):
        quiet.append((await _consume(s, n, scraped=False))[0])
        rate, count = await _consume(s, n, scraped=True)
        scraped.append(rate)
        scrapes.append(count)
    return {"quiet": statistics.median(quiet), "scraped": statistics.median(scraped), "scrapes": min(scrapes)}


async def report(s: Servers) -> str:
    t = await tracing_cost(s)
    m = await metrics_overhead(s)
    off, on, unsampled = t["off"], t["on"], t["sampled out"]
    lines = [
        "## Observability (issue #14): what tracing and metrics cost\n",
        "| what | off | on | on / off |",
        "|---|---:|---:|---:|",
        f"| sagas per second, 1 orchestrator, 500 at once (median of {ROUNDS}), tracing"
        f" | {off['rate']:,.0f} | {on['rate']:,.0f} | {on['rate'] / off['rate']:.0%} |",
        f"| one saga in flight, p50 (60 sagas, median of {ROUNDS}), tracing"
        f" | {off['p50']:.1f} ms | {on['p50']:.1f} ms | {on['p50'] / off['p50']:.0%} |",
        f"| the same two with tracing on and a sample ratio of 0 (nothing sampled)"
        f" | | {unsampled['rate']:,.0f} sagas/s; {unsampled['p50']:.1f} ms"
        f" | {unsampled['rate'] / off['rate']:.0%}; {unsampled['p50'] / off['p50']:.0%} |",
        f"| bus consumer, batches of 100 (300,000 messages, median of {ROUNDS}), /metrics scraped every second"
        f" | {m['quiet']:,.0f} msg/s | {m['scraped']:,.0f} msg/s | {m['scraped'] / m['quiet']:.0%} |",
        "",
        f"Tracing on: {t['spans']:,} spans exported to the OTLP receiver in all; each scraped bus run"
        f" answered at least {m['scrapes']:.0f} scrapes.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from .common import servers

    with servers() as srv:
        print(asyncio.run(report(srv)))
