"""``/health/live``, ``/health/ready``, ``/health/startup`` and ``/metrics``: a small ASGI
app served by uvicorn beside the service, in its event loop.

Readiness asks what the service needs (each check given two seconds), is false while a
condition holds (``conditions.py``: waiting out an outage, say) and from the moment a stop
begins. Liveness is false once a condition has held past its bound. ``/metrics`` first runs the scrape-time refreshers
(``metrics.on_scrape``), then answers in the format the scraper asks for: OpenMetrics,
with exemplars, for Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from . import metrics
from .conditions import CONDITIONS, Condition, Conditions

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The service's runner owns SIGTERM and SIGINT: it drains, then stops us.
        yield


class HealthServer:
    def __init__(self, checks: dict[str, Check], conditions: Conditions = CONDITIONS) -> None:
        self.checks = checks
        self.conditions = conditions
        self.started = False  # set once the service is consuming
        self.draining = False  # set when a stop signal arrives: readiness answers no at once
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            interface="asgi3",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(), name="health-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # the port is taken, say
                raise RuntimeError("the health server stopped while starting")
            await asyncio.sleep(0.01)
        bound: int = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("health and metrics on http://%s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
        self._server = self._task = None

    async def ready(self) -> dict[str, str]:
        """Each dependency's state: "ok" or the error."""

        async def one(check: Check) -> str:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
            except Exception as exc:  # reported, not raised: this is the probe's answer
                return f"{type(exc).__name__}: {exc}"
            return "ok"

        results = await asyncio.gather(*(one(c) for c in self.checks.values()))
        return dict(zip(self.checks, results, strict=True))

    async def app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        status, content_type, body = await self.answer(scope["path"], headers.get("accept", ""))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def answer(self, path: str, accept: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            await metrics.refresh_all()
            encoder, content_type = choose_encoder(accept)
            return 200, content_type, encoder(REGISTRY)
        if path == "/health/live":
            overdue = self.conditions.overdue()
            if overdue:
                body = json.dumps({"status": "not live", "conditions": _described(overdue)}).encode()
                return 503, "application/json", body
            return 200, "application/json", b'{"status": "live"}'
        if path == "/health/startup":
            body = json.dumps({"status": "started" if self.started else "starting"}).encode()
            return (200 if self.started else 503), "application/json", body
        if path == "/health/ready":
            if self.draining:
                return 503, "application/json", b'{"status": "draining"}'
            results = await self.ready()
            held = self.conditions.held()
            ok = self.started and all(v == "ok" for v in results.values()) and not held and not self.draining
            answer: dict[str, Any] = {"status": "ready" if ok else "not ready", "checks": results}
            if held:
                answer["conditions"] = _described(held)
            body = json.dumps(answer).encode()
            return (200 if ok else 503), "application/json", body
        return 404, "application/json", b'{"error": "not found"}'


def _described(conditions: dict[str, Condition]) -> dict[str, str]:
    return {name: f"{c.reason} (for {c.age():.0f} s)" for name, c in conditions.items()}
