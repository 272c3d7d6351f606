"""``/health/live``, ``/health/ready``, ``/health/startup`` and ``/metrics`` on a small
asyncio HTTP server (GET only, one request per connection): enough for probes and
Prometheus, with no web framework in every service image."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]


class HealthServer:
    def __init__(self, checks: dict[str, Check]) -> None:
        self.checks = checks
        self.started = False  # set once the service is consuming
        self.draining = False  # set when a stop signal arrives: readiness answers no at once
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info("health and metrics on http://%s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def ready(self) -> dict[str, str]:
        """Each dependency's state: "ok" or the error."""
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                await asyncio.wait_for(check(), 2.0)
                results[name] = "ok"
            except Exception as exc:  # reported, not raised: this is the probe's answer
                results[name] = f"{type(exc).__name__}: {exc}"
        return results

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else "/"
            status, content_type, body = await self._answer(path)
            head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        if path == "/health/live":
            return "200 OK", "application/json", b'{"status": "live"}'
        if path == "/health/startup":
            ok = self.started
            return (
                ("200 OK" if ok else "503 Service Unavailable"),
                "application/json",
                json.dumps({"status": "started" if ok else "starting"}).encode(),
            )
        if path == "/health/ready":
            if self.draining:
                return "503 Service Unavailable", "application/json", b'{"status": "draining"}'
            results = await self.ready()
            ok = self.started and all(v == "ok" for v in results.values())
            body = json.dumps({"status": "ready" if ok else "not ready", "checks": results}).encode()
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
        return "404 Not Found", "application/json", b'{"error": "not found"}'
