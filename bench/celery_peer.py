"""The peer: a Celery chain of four no-op tasks on the same Redis, one worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from celery import Celery, chain

ROOT = Path(__file__).resolve().parents[1]
APP_MODULE = "bench.celery_tasks"


def _app(redis_url: str) -> Celery:
    # The worker imports the same module: one app, one registration of the task.
    os.environ["BENCH_CELERY_REDIS"] = redis_url
    from bench import celery_tasks

    return celery_tasks.app


def _forget(result: Any) -> None:
    """Drop the stored results of every task of a chain: leave nothing in Redis."""
    while result is not None:
        result.forget()
        result = result.parent


def run(redis_url: str, n: int = 500, in_flight_one: int = 50) -> dict[str, float]:
    app = _app(redis_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "BENCH_CELERY_REDIS": redis_url, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            APP_MODULE,
            "worker",
            "-Q",
            queue,
            "-c",
            "1",
            "--pool",
            "solo",
            "-l",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        noop = app.tasks["bench.celery_tasks.noop"]
        # warm up: wait for the worker
        warm = chain(*(noop.si().set(queue=queue) for _ in range(4)))()
        warm.get(timeout=60)
        _forget(warm)
        started = time.perf_counter()
        results = [chain(*(noop.si().set(queue=queue) for _ in range(4)))() for _ in range(n)]
        for r in results:
            r.get(timeout=120)
            _forget(r)
        rate = n / (time.perf_counter() - started)
        lat = []
        for _ in range(in_flight_one):
            t = time.perf_counter()
            one = chain(*(noop.si().set(queue=queue) for _ in range(4)))()
            one.get(timeout=30)
            lat.append((time.perf_counter() - t) * 1000)
            _forget(one)
        lat.sort()
        return {"chains_per_s": rate, "p50_ms": lat[len(lat) // 2]}
    finally:
        worker.terminate()
        worker.wait(15)
        # Kombu's bookkeeping for our private queue: leave nothing behind.
        client = redis.Redis.from_url(redis_url)
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.close()
