"""The bus on NATS JetStream beside the bus on Redis, in the same run (issue #27): consumer
throughput (one message per read, batches of 100) against a raw nats-py loop doing the
same round trips (fetch, ack), per-hop latency at 500 msg/s, saga throughput and one
saga in flight with instant workers, and redelivery after a consumer is killed -9."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import nats
from nats.js.api import ConsumerConfig

from alphasaga_contracts import saga as sg
from alphasaga_shared.bus import open_bus, subjects
from alphasaga_shared.bus.jetstream import JetStreamBus
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, Outgoing, envelope_for

from . import bus as redis_bus
from . import saga
from .common import Servers, bench_settings, median_of, percentile


def nats_url() -> str:
    return os.environ.get("ALPHASAGA_BENCH_NATS_URL") or os.environ.get("ALPHASAGA_TEST_NATS_URL") or ""


async def _remove(url: str, namespace: str) -> None:
    from tests.support.own_nats import remove_namespace

    await remove_namespace(url, namespace)


async def _fill(settings: Settings, stream: str, n: int) -> None:
    publisher = JetStreamBus(settings, service="bench", url=settings.broker_url or "")
    try:
        for start in range(0, n, 500):
            await publisher.publish_entries([(stream, redis_bus.entry(i)) for i in range(start, min(n, start + 500))])
    finally:
        await publisher.stop()


async def _raw_consume(settings: Settings, stream: str, n: int, count: int, durable: str) -> float:
    """What a hand-written JetStream consumer does: fetch, then ack each message."""
    where = subjects.place(stream)
    nc = await nats.connect(settings.broker_url or "")
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            where.subject, durable=durable, stream=where.stream, config=ConsumerConfig(ack_wait=30, max_ack_pending=-1)
        )
        done = 0
        started = time.perf_counter()
        while done < n:
            try:
                msgs = await sub.fetch(count, timeout=1)
            except TimeoutError:
                continue
            for m in msgs:
                await m.ack()
            done += len(msgs)
        return n / (time.perf_counter() - started)
    finally:
        await nc.close()


async def throughput(s: Servers, url: str, n: int, runs: int = 3) -> list[dict[str, Any]]:
    """Raw loop and bus, interleaved round by round (the order swapped each round, so that
    neither always runs on the warmer machine), the median of ``runs``; each row keeps its
    rounds' ratios and the 1-minute load average after each round."""
    rows = []
    for count, label in ((1, "one message per read and ack"), (100, "batches of 100")):
        runs_of: dict[str, list[float]] = {"raw": [], "bus": []}
        ratios, load = [], []
        for i in range(runs):
            for kind in ("raw", "bus") if i % 2 == 0 else ("bus", "raw"):
                settings = bench_settings(s, broker_url=url)
                stream = f"{settings.namespace}:cmd:bench"
                try:
                    await _fill(settings, stream, n)
                    if kind == "raw":
                        runs_of[kind].append(await _raw_consume(settings, stream, n, count, "raw"))
                    else:
                        runs_of[kind].append(await redis_bus.bus_consume(settings, stream, n, count))
                finally:
                    await _remove(url, settings.namespace)
            ratios.append(runs_of["bus"][-1] / runs_of["raw"][-1])
            load.append(os.getloadavg()[0])
        raw, ours = median_of(runs_of["raw"]), median_of(runs_of["bus"])
        rows.append(
            {
                "what": f"consume, {label}",
                "raw": raw,
                "ours": ours,
                "unit": "msg/s",
                "ratio": ours / raw,
                "ratios": ratios,
                "load": load,
            }
        )
    return rows


def throughput_markdown(rows: list[dict[str, Any]], n: int) -> str:
    out = [
        f"## The bus on JetStream beside a raw nats-py loop, {n:,} messages, 3 interleaved rounds\n",
        "| what | raw nats-py (median) | bus (median) | ratio of medians | each round's ratio | load after each |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['what']} | {r['raw']:,.0f} msg/s | {r['ours']:,.0f} msg/s | {r['ratio']:.0%}"
            f" | {', '.join(f'{x:.0%}' for x in r['ratios'])} | {', '.join(f'{x:.1f}' for x in r['load'])} |"
        )
    return "\n".join(out) + "\n"


PRODUCER = """
import asyncio, sys, time, uuid, json, nats
from alphasaga_contracts import saga as sg
from alphasaga_shared.bus.jetstream import payload_of
from alphasaga_shared.wire import encode, envelope_for

async def main(url, subject, rate, n):
    nc = await nats.connect(url)
    js = nc.jetstream()
    interval = 1 / rate
    start = time.perf_counter()
    for i in range(n):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason=str(time.time_ns()))
        await js.publish(subject, payload_of(encode(envelope_for(msg, correlation_id=str(msg.saga_id)))))
    await nc.close()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
"""


async def _hops(label: str, settings: Settings, rate: float, n: int) -> list[float]:
    """Milliseconds from the publish (in the publisher process) to the consumer's handler."""
    stream = f"{settings.namespace}:cmd:lat"
    hops: list[float] = []
    finished = asyncio.Event()

    def record(reason: str) -> None:
        hops.append((time.time_ns() - int(reason)) / 1e6)
        if len(hops) >= n:
            finished.set()

    maker = JetStreamBus(settings, service="bench", url=settings.broker_url or "")
    where = await maker.ensure_stream(stream)
    await maker.stop()
    producer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRODUCER, settings.broker_url or "", where.subject, str(rate), str(n)
    )
    if label == "raw":
        nc = await nats.connect(settings.broker_url or "")
        sub = await nc.jetstream().pull_subscribe(where.subject, durable="raw", stream=where.stream)
        while not finished.is_set():
            try:
                msgs = await sub.fetch(100, timeout=1)
            except TimeoutError:
                continue
            for m in msgs:
                record(sg.CancelSaga.model_validate_json(_body(m.data)).reason)
                await m.ack()
        await nc.close()
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
    await producer.wait()
    return hops[len(hops) // 10 :]


def _body(data: bytes) -> str:
    import json

    return str(json.loads(data)["body"])


async def latency(s: Servers, url: str, rate: float = 500, n: int = 5000) -> list[dict[str, Any]]:
    rows = []
    for label in ("raw", "ours"):
        settings = bench_settings(s, broker_url=url, block_ms=1000)
        try:
            hops = await _hops(label, settings, rate, n)
        finally:
            await _remove(url, settings.namespace)
        rows.append({"label": label, "p50": percentile(hops, 50), "p99": percentile(hops, 99)})
    return rows


HOLDER = """
import asyncio, os, sys
from alphasaga_shared.bus import open_bus
from alphasaga_shared.config import Settings

async def main():
    async def hold(env, d):
        print("HOLDING", flush=True)
        await asyncio.sleep(3600)
    bus = open_bus(Settings(), service="bench")
    bus.subscribe(sys.argv[1], hold, group="bench", max_records=1)
    await bus.start()
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def redelivery(settings: Settings) -> float:
    """Seconds from kill -9 of a consumer holding a message to another consumer's handler
    (the reclaim time, ``reclaim_idle_ms``, is the promise)."""
    stream = f"{settings.namespace}:cmd:redeliver"
    env = {
        **os.environ,
        "ALPHASAGA_REDIS_URL": settings.redis_url or "",
        "ALPHASAGA_BROKER_URL": settings.broker_url or "",
        "ALPHASAGA_NAMESPACE": settings.namespace,
        "ALPHASAGA_CONSUMER": "victim",
        "ALPHASAGA_LOG_LEVEL": "WARNING",
    }
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, stream, env=env, stdout=asyncio.subprocess.PIPE
    )
    got = asyncio.Event()

    async def handle(env_: Envelope, d: Delivery) -> Sequence[Outgoing]:
        got.set()
        return ()

    survivor = open_bus(settings.model_copy(update={"consumer": "survivor"}), service="bench")
    try:
        msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason="held")
        # Published before any consumer reads: the holder, reading first, takes it.
        assert holder.stdout is not None
        line = b""
        publisher = open_bus(settings, service="bench")
        while b"HOLDING" not in line:
            if not line:
                await asyncio.sleep(2)  # the holder's bus is up and reading
                await publisher.publish([Outgoing(stream, envelope_for(msg, correlation_id=str(msg.saga_id)))])
            line = await asyncio.wait_for(holder.stdout.readline(), 60)
        await publisher.stop()
        survivor.subscribe(stream, handle, group="bench", max_records=1)
        await survivor.start()
        holder.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        await asyncio.wait_for(got.wait(), 60)
        return time.perf_counter() - killed
    finally:
        if holder.returncode is None:
            holder.send_signal(signal.SIGKILL)
        await holder.wait()
        await survivor.stop()


async def calls_per_message(s: Servers, url: str, n: int = 2000) -> dict[str, tuple[float, float]]:
    """Python calls and event-loop passes per message, one per read, raw loop and bus, under
    cProfile: counts, not times, so the machine's load does not move them (the wall-clock
    ratio above moved by tens of points between rounds on a loaded machine)."""
    import cProfile
    import pstats

    found = {}
    for kind in ("raw", "bus"):
        settings = bench_settings(s, broker_url=url)
        stream = f"{settings.namespace}:cmd:bench"
        try:
            await _fill(settings, stream, n)
            profile = cProfile.Profile()
            profile.enable()
            if kind == "raw":
                await _raw_consume(settings, stream, n, 1, "raw")
            else:
                await redis_bus.bus_consume(settings, stream, n, 1)
            profile.disable()
        finally:
            await _remove(url, settings.namespace)
        stats = pstats.Stats(profile)
        passes = sum(
            row[1]
            for (path, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
            if name == "_run_once" and path.endswith("base_events.py")
        )
        found[kind] = (stats.total_calls / n, passes / n)  # type: ignore[attr-defined]
    return found


async def throughput_report(s: Servers) -> str:
    """``python -m bench jsbus``: the consume rows alone, without the rest of the section."""
    url = nats_url()
    if not url:
        return "## JetStream\n\nnot measured: set ALPHASAGA_BENCH_NATS_URL (or ALPHASAGA_TEST_NATS_URL)\n"
    n = int(os.environ.get("ALPHASAGA_BENCH_JETSTREAM_N", "20000"))
    counts = await calls_per_message(s, url)
    lines = [
        throughput_markdown(await throughput(s, url, n), n),
        "| one message per read, under cProfile | Python calls per message | event-loop passes per message |",
        "|---|---:|---:|",
        *(f"| {kind} | {calls:,.0f} | {passes:.1f} |" for kind, (calls, passes) in counts.items()),
    ]
    return "\n".join(lines) + "\n"


async def report(s: Servers) -> str:
    url = nats_url()
    if not url:
        return "## JetStream\n\nnot measured: set ALPHASAGA_BENCH_NATS_URL (or ALPHASAGA_TEST_NATS_URL)\n"
    n = int(os.environ.get("ALPHASAGA_BENCH_JETSTREAM_N", "20000"))
    lines = [
        f"## The bus on JetStream beside Redis (issue #27), the same run, {n:,} messages, median of 3\n",
        "| what | Redis: raw / bus / ratio | JetStream: raw nats-py / bus / ratio |",
        "|---|---:|---:|",
    ]
    on_redis = await redis_bus.throughput(s, n)
    on_js = await throughput(s, url, n)
    for r, j in zip(on_redis, on_js, strict=True):
        lines.append(
            f"| {r['what']} | {r['raw']:,.0f} / {r['ours']:,.0f} msg/s / {r['ratio']:.0%}"
            f" | {j['raw']:,.0f} / {j['ours']:,.0f} msg/s / {j['ratio']:.0%} |"
        )
    lat_n = max(1000, n // 4)
    r_lat = {r["key"]: r for r in await redis_bus.latency(s, (500,), lat_n / 500, ("raw", "ours"))}
    j_lat = {r["label"]: r for r in await latency(s, url, 500, lat_n)}
    for label in ("raw", "ours"):
        lines.append(
            f"| per hop at 500 msg/s, {'raw loop' if label == 'raw' else 'bus'}, p50 / p99"
            f" | {r_lat[label]['p50']:.2f} / {r_lat[label]['p99']:.2f} ms"
            f" | {j_lat[label]['p50']:.2f} / {j_lat[label]['p99']:.2f} ms |"
        )
    sagas_n = max(100, n // 20)
    js_env = {"ALPHASAGA_BROKER_URL": url}
    r_rate = statistics.median([await saga.throughput(s, 1, sagas_n) for _ in range(3)])
    j_rate = statistics.median([await _on_js(saga.throughput(s, 1, sagas_n, extra_env=js_env), url) for _ in range(3)])
    lines.append(f"| sagas per second, instant workers, {sagas_n:,} at once | {r_rate:,.0f} | {j_rate:,.0f} |")
    r_one = await saga.latency(s, 50)
    j_one = await _on_js(saga.latency(s, 50, extra_env=js_env), url)
    lines.append(
        f"| one saga in flight, p50 / p99 | {percentile(r_one, 50):.1f} / {percentile(r_one, 99):.1f} ms"
        f" | {percentile(j_one, 50):.1f} / {percentile(j_one, 99):.1f} ms |"
    )
    r_red = [await redelivery(bench_settings(s, reclaim_idle_ms=1500)) for _ in range(3)]
    j_settings = [bench_settings(s, broker_url=url, reclaim_idle_ms=1500) for _ in range(3)]
    j_red = []
    for js_settings in j_settings:
        try:
            j_red.append(await redelivery(js_settings))
        finally:
            await _remove(url, js_settings.namespace)
    lines.append(
        f"| redelivery after kill -9 of the holder, reclaim time 1.5 s, median of 3"
        f" | {statistics.median(r_red):.2f} s | {statistics.median(j_red):.2f} s |"
    )
    return "\n".join(lines) + "\n"


async def _on_js(measure: Any, url: str) -> Any:
    """A saga measurement on JetStream; the stack's streams are removed with its namespace
    by ``saga.Stack.cleanup`` (Redis keys) and here (JetStream's)."""
    before = {i.config.name for i in await _streams(url)}
    try:
        return await measure
    finally:
        nc = await nats.connect(url)
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name not in before and (info.config.name or "").lower().startswith(("bench", "kv_bench")):
                await js.delete_stream(info.config.name or "")
        await nc.close()


async def _streams(url: str) -> list[Any]:
    nc = await nats.connect(url)
    try:
        return list(await nc.jetstream().streams_info())
    finally:
        await nc.close()
