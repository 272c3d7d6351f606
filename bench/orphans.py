"""Orphan recovery: a consumer is killed with -9 while it holds an entry; how long until
another consumer has answered it, with the bus's default timings. 20 kills."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from alphasaga_contracts import saga as sg
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import encode, envelope_for

from .common import Servers, bench_settings, cleanup, percentile

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "support" / "echo_worker.py"


def _spawn(env: dict[str, str], name: str, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER)],
        env={**env, "ALPHASAGA_CONSUMER": name, **extra},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


async def _wait_for(log: Path, needle: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{needle!r} not in {log} after {timeout} s")
        await asyncio.sleep(0.01)


async def recovery(s: Servers, kills: int = 20) -> dict[str, float]:
    """Seconds from kill -9 to the survivor's answer, p50 and p99 (defaults for the bus)."""
    settings: Settings = bench_settings(s)
    tmp = Path(tempfile.mkdtemp(prefix="alphasaga-orphans-"))
    stream, replies = f"{settings.namespace}:cmd:echo", f"{settings.namespace}:evt:echo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
    env.update(
        ALPHASAGA_REDIS_URL=s.redis_url,
        ALPHASAGA_DATABASE_URL=s.database_url,
        ALPHASAGA_NAMESPACE=settings.namespace,
        ALPHASAGA_LOG_LEVEL="WARNING",
        ECHO_STREAM=stream,
        ECHO_REPLY_STREAM=replies,
        ECHO_BATCH="1",
        PYTHONPATH=str(ROOT),
    )
    redis = aioredis.from_url(s.redis_url)
    times: list[float] = []
    try:
        for i in range(kills):
            log, survivor_log = tmp / f"victim{i}.log", tmp / f"survivor{i}.log"
            victim = _spawn(env, f"victim{i}", log, ECHO_HANG_ON=f"m{i}")
            await _wait_for(log, "ready")
            msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason=f"m{i}")
            await redis.xadd(stream, encode(envelope_for(msg, correlation_id=str(msg.saga_id))))  # type: ignore[arg-type]
            await _wait_for(log, "FINISHED")
            # The survivor starts once the victim holds the entry, so that it reads no new one.
            survivor = _spawn(env, f"survivor{i}", survivor_log)
            try:
                await _wait_for(survivor_log, "ready")
                answered = int(await redis.xlen(replies))
                os.kill(victim.pid, signal.SIGKILL)
                killed = time.perf_counter()
                victim.wait()
                while int(await redis.xlen(replies)) == answered:
                    await asyncio.sleep(0.005)
                times.append(time.perf_counter() - killed)
            finally:
                survivor.terminate()
                survivor.wait()
        raw: Any = Settings.model_fields
        return {
            "p50": percentile(times, 50),
            "p99": percentile(times, 99),
            "kills": float(len(times)),
            "idle_s": raw["reclaim_idle_ms"].default / 1000,
            "interval_s": raw["reclaim_interval_ms"].default / 1000,
        }
    finally:
        await redis.aclose()
        await cleanup(s, settings.namespace, settings.database_schema)


def markdown(r: dict[str, float]) -> str:
    return (
        "## Orphan recovery (issue #13): kill -9 of a consumer holding an entry, default timings\n\n"
        "| kills | idle time, scan interval | recovery p50 | p99 | target | reference design |\n"
        "|---:|---|---:|---:|---:|---:|\n"
        f"| {r['kills']:.0f} | {r['idle_s']:.1f} s, {r['interval_s']:.2f} s | {r['p50']:.2f} s | {r['p99']:.2f} s"
        " | ≤ 2 s | 5.0 s |\n"
    )
