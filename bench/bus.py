"""The bus against a raw redis-py loop: consumer throughput (one message per read and
ack, and batches of 100) and per-hop latency at a fixed publish rate."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from alphasaga_contracts import saga as sg
from alphasaga_shared.bus import ensure_group, open_bus
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, Outgoing, encode, envelope_for

from .common import Servers, bench_settings, median_of, percentile


def entry(i: int) -> dict[str, str]:
    msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason=str(i))
    return encode(envelope_for(msg, correlation_id=str(msg.saga_id)))


async def fill(redis: aioredis.Redis, stream: str, n: int) -> None:
    await redis.delete(stream)
    await ensure_group(redis, stream, "bench")
    fields = [entry(i) for i in range(n)]
    for start in range(0, n, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for f in fields[start : start + 1000]:
                pipe.xadd(stream, f)  # type: ignore[arg-type]
            await pipe.execute()


async def raw_consume(redis: aioredis.Redis, stream: str, n: int, count: int) -> float:
    """What a hand-written consumer does: XREADGROUP, then XACK what it read."""
    done = 0
    started = time.perf_counter()
    while done < n:
        reply: Any = await redis.xreadgroup("bench", "raw", {stream: ">"}, count=count, block=1000)
        for _, entries in reply:
            ids = [eid for eid, _ in entries]
            await redis.xack(stream, "bench", *ids)
            done += len(ids)
    return n / (time.perf_counter() - started)


async def bus_consume(settings: Settings, stream: str, n: int, count: int) -> float:
    done = asyncio.Event()
    seen = 0

    async def handler(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()
        return ()

    bus = open_bus(settings, service="bench")
    bus.subscribe(stream, handler, group="bench", max_records=count)
    await bus.start()
    # Timed from here, as the raw loops are from their first read: connecting and making
    # the group or consumer are outside both (on JetStream, five API round trips under load
    # were up to a tenth of a short run's time, counted against the bus alone).
    started = time.perf_counter()
    await done.wait()
    elapsed = time.perf_counter() - started
    await bus.stop()
    return n / elapsed


async def throughput(s: Servers, n: int, runs: int = 3) -> list[dict[str, Any]]:
    settings = bench_settings(s)
    redis = aioredis.from_url(s.redis_url)
    stream = f"{settings.namespace}:cmd:bench"
    rows = []
    try:
        for count, label in ((1, "one message per read and ack"), (100, "batches of 100")):
            raw_runs, bus_runs = [], []
            for _ in range(runs):
                await fill(redis, stream, n)
                raw_runs.append(await raw_consume(redis, stream, n, count))
                await fill(redis, stream, n)
                bus_runs.append(await bus_consume(settings, stream, n, count))
            raw, ours = median_of(raw_runs), median_of(bus_runs)
            rows.append({"what": f"consume, {label}", "raw": raw, "ours": ours, "unit": "msg/s", "ratio": ours / raw})
    finally:
        await redis.delete(stream)
        await redis.aclose()
    return rows


PRODUCER = """
import asyncio, sys, time, uuid
import redis.asyncio as aioredis
from alphasaga_contracts import saga as sg
from alphasaga_shared.wire import encode, envelope_for

async def main(url, stream, rate, n):
    r = aioredis.from_url(url)
    interval = 1 / rate
    start = time.perf_counter()
    for i in range(n):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason=str(time.time_ns()))
        await r.xadd(stream, encode(envelope_for(msg, correlation_id=str(msg.saga_id))))
    await r.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


async def _hops(
    label: str, s: Servers, settings: Settings, stream: str, rate: float, n: int
) -> tuple[list[float], float]:
    """Milliseconds from XADD (in the publisher process) to the consumer's handler, and the
    consumer's CPU as a share of one core. ``spin`` is the raw loop that never blocks: it
    asks Redis again at once when nothing came, so it is never asleep when a message
    arrives (what a read kept warm by polling would give, at the CPU it burns)."""
    redis = aioredis.from_url(s.redis_url)
    await redis.delete(stream)
    await ensure_group(redis, stream, "bench")
    hops: list[float] = []
    finished = asyncio.Event()

    def record(reason: str) -> None:
        hops.append((time.time_ns() - int(reason)) / 1e6)
        if len(hops) >= n:
            finished.set()

    producer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRODUCER, s.redis_url, stream, str(rate), str(n)
    )
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        if label in ("raw", "spin"):
            block = 1000 if label == "raw" else None
            while not finished.is_set():
                reply: Any = await redis.xreadgroup("bench", "raw", {stream: ">"}, count=100, block=block)
                for _, entries in reply:
                    for _, fields in entries:
                        record(sg.CancelSaga.model_validate_json(fields[b"body"]).reason)
                    await redis.xack(stream, "bench", *[eid for eid, _ in entries])
        else:

            async def handler(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
                assert isinstance(env.message, sg.CancelSaga)
                record(env.message.reason)
                return ()

            bus = open_bus(settings, service="bench")
            bus.subscribe(stream, handler, group="bench")
            await bus.start()
            await finished.wait()
            await bus.stop()
        share = (time.process_time() - cpu) / (time.perf_counter() - wall)
        await producer.wait()
    finally:
        await redis.delete(stream)
        await redis.aclose()
    return hops[len(hops) // 10 :], share  # drop the first tenth: connection set-up, imports


LABELS = {"raw": "raw loop, blocking read", "spin": "raw loop, never blocking", "ours": "the bus"}


async def latency(
    s: Servers, rates: tuple[float, ...] = (500, 50), seconds: float = 10, labels: Sequence[str] = tuple(LABELS)
) -> list[dict[str, Any]]:
    """Publish from another process at each rate for ``seconds``; the hop is XADD to
    handler start. At 50 a second the consumer is idle 20 ms between messages, as a worker
    is between the steps of one saga in flight: each hop then wakes it."""
    settings = bench_settings(s, block_ms=1000)
    stream = f"{settings.namespace}:cmd:lat"
    rows = []
    for rate in rates:
        for label in labels:
            hops, share = await _hops(label, s, settings, stream, rate, int(rate * seconds))
            rows.append(
                {
                    "key": label,
                    "label": LABELS[label],
                    "rate": rate,
                    "p50": percentile(hops, 50),
                    "p99": percentile(hops, 99),
                    "cpu": share,
                }
            )
    return rows
