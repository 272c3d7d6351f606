"""Celery app for the peer benchmark (a benchmark-only dependency)."""

from __future__ import annotations

import os

from celery import Celery


def make_app(redis_url: str) -> Celery:
    app = Celery("bench", broker=redis_url, backend=redis_url)
    app.conf.update(
        task_acks_late=False, worker_prefetch_multiplier=64, result_expires=600, broker_connection_retry_on_startup=True
    )

    @app.task(name="bench.celery_tasks.noop")  # type: ignore[untyped-decorator]
    def noop() -> None:
        return None

    return app


app = make_app(os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/0"))
