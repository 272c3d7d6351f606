"""Runs one service process: settings, connection checks that fail fast with one line,
the bus, the event store, graceful shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from . import telemetry
from .bus import Bus
from .config import ConfigError, Settings
from .eventstore import EventStore
from .health import HealthServer

log = logging.getLogger(__name__)


STOP_TIMEOUT_S = 5.0


# What connecting to PostgreSQL raises when it is down, unreachable or refuses us.
DATABASE_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class StartupError(RuntimeError):
    """A dependency is missing or unreachable; the message is one line for an operator."""


@dataclass
class ServiceContext:
    name: str
    settings: Settings
    bus: Bus
    store: EventStore
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


def required_urls(settings: Settings) -> tuple[str, str]:
    if settings.production:
        return settings.require_urls()
    try:
        return settings.require_urls()
    except ConfigError as exc:
        raise ConfigError(
            str(exc).replace("(required when ALPHASAGA_ENV=production)", "")
            + "(`make up` starts every service with embedded servers)"
        ) from None


async def check_redis(url: str, timeout: float) -> None:
    client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await asyncio.wait_for(client.ping(), timeout)
    except Exception as exc:
        raise StartupError(f"cannot reach Redis at {url}: {exc or type(exc).__name__}") from None
    finally:
        await client.aclose()


async def connect_store(url: str, settings: Settings, name: str) -> EventStore:
    try:
        return await asyncio.wait_for(
            EventStore.connect(
                url, settings.database_schema, timeout=settings.connect_timeout_s, application_name=f"alphasaga-{name}"
            ),
            settings.connect_timeout_s * 2,
        )
    except DATABASE_UNREACHABLE as exc:
        raise StartupError(f"cannot reach PostgreSQL at {url}: {exc or type(exc).__name__}") from None


async def _run(name: str, setup: Callable[[ServiceContext], Awaitable[None]], settings: Settings) -> None:
    redis_url, database_url = required_urls(settings)
    await check_redis(redis_url, settings.connect_timeout_s)
    store = await connect_store(database_url, settings, name)
    bus = Bus(settings, service=name, redis_url=redis_url)
    ctx = ServiceContext(name=name, settings=settings, bus=bus, store=store)
    stop = asyncio.Event()
    health = HealthServer({"redis": lambda: check_redis(redis_url, 2.0), "postgres": store.ping})

    def drain() -> None:
        health.draining = True  # probes see the stop while the bus and store still wind down
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, drain)
    tasks: list[asyncio.Task[None]] = []
    try:
        if settings.http_port is not None:
            await health.start(settings.http_host, settings.http_port)
        await setup(ctx)
        await bus.start()
        health.started = True
        tasks = [asyncio.create_task(job(), name=f"{name}-background") for job in ctx.background]
        log.info("%s ready (consumer %s, namespace %s)", name, settings.consumer, settings.namespace)
        print(f"alphasaga-{name}: ready", file=sys.stderr, flush=True)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        log.info("%s stopping", name)
        for t in tasks:
            t.cancel()
        # Every step of a stop has a deadline: a task or connection that does not let go
        # must not keep the process alive (work in flight stays pending for the reclaimer).
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            for t in stuck:
                log.warning("background task %s did not stop in time", t.get_name())
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                log.debug("background task %s ended with %r", t.get_name(), t.exception())
        try:
            await asyncio.wait_for(bus.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("the bus did not stop within %ss", STOP_TIMEOUT_S)
        try:
            await asyncio.wait_for(store.close(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("database connections still in use after %ss: closing them", STOP_TIMEOUT_S)
            store.terminate()
        await health.stop()


def run_service(name: str, setup: Callable[[ServiceContext], Awaitable[None]]) -> None:
    """Entry point of every service's ``__main__``. Exits 2 with one line when a
    dependency is missing or unreachable."""
    settings = Settings()
    telemetry.setup_logging(name, settings.log_level)
    telemetry.setup_tracing(name, settings.otlp_endpoint)
    try:
        asyncio.run(_run(name, setup, settings))
    except (ConfigError, StartupError) as exc:
        print(f"alphasaga-{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
