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
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from . import telemetry
from .bus import BusPort, open_bus, transport_of
from .conditions import CONDITIONS, Conditions
from .config import ConfigError, InvalidSetting, Settings, redact
from .eventstore import EventStore
from .eventstore.migrations import SchemaBehind
from .health import HealthServer
from .loops import Outage
from .outages import OUTAGES

log = logging.getLogger(__name__)


# What connecting to PostgreSQL raises when it is down, unreachable or refuses us.
DATABASE_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def stop_deadline_s(settings: Settings) -> float:
    """The longest a graceful stop can take: the background tasks, the bus and the
    database connections each get ``stop_timeout_s`` (an orchestrator's platform must
    give it longer before killing it)."""
    return 3 * settings.stop_timeout_s


class StartupError(RuntimeError):
    """A dependency is missing or unreachable; the message is one line for an operator."""


class BackgroundTaskFailed(RuntimeError):
    """A background loop failed for a reason that is not an outage: the process stops."""


class ConditionOverdue(RuntimeError):
    """A condition (``conditions.py``) held past its bound: the process stops, so that its
    supervisor starts a fresh one."""


WATCHDOG_PERIOD_S = 1.0


async def watchdog(conditions: Conditions = CONDITIONS, period_s: float = WATCHDOG_PERIOD_S) -> None:
    """Raise ``ConditionOverdue`` once any condition has held past its bound."""
    while True:
        overdue = conditions.overdue()
        if overdue:
            name, c = next(iter(overdue.items()))
            raise ConditionOverdue(f"{name}: {c.reason} for {c.age():.0f} s (more than {c.bound_s:g} s)")
        await asyncio.sleep(period_s)


@dataclass
class ServiceContext:
    name: str
    settings: Settings
    bus: BusPort
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
        raise StartupError(f"cannot reach Redis at {redact(url)}: {exc or type(exc).__name__}") from None
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
    except SchemaBehind as exc:  # not an outage: waiting would not help
        raise ConfigError(str(exc)) from None
    except DATABASE_UNREACHABLE as exc:
        raise StartupError(f"cannot reach PostgreSQL at {redact(url)}: {exc or type(exc).__name__}") from None


async def check_bus(url: str, settings: Settings, timeout: float) -> None:
    """The transport answers (Redis's PING, or NATS with JetStream enabled)."""
    if transport_of(url) == "redis":
        await check_redis(url, timeout)
        return
    bus = open_bus(settings, service="check", url=url)
    try:
        await asyncio.wait_for(bus.ping(), timeout)
    except Exception as exc:
        raise StartupError(f"cannot reach NATS JetStream at {url}: {exc or type(exc).__name__}") from None
    finally:
        await bus.stop()


async def wait_for_servers(bus_url: str, database_url: str, settings: Settings, name: str) -> EventStore:
    """Reach the transport (Redis or NATS) and PostgreSQL: at once, or (``wait_for_servers_s``)
    retrying with backoff while they are down, as a container started before its database does."""
    outage = Outage(f"{name} start-up")
    attempts = AsyncRetrying(
        retry=retry_if_exception_type(StartupError),
        stop=stop_after_delay(settings.wait_for_servers_s),
        wait=wait_exponential_jitter(multiplier=0.5, jitter=0.5, max=10),
        before_sleep=outage.failed,
        reraise=True,
    )
    async for attempt in attempts:
        with attempt:
            await check_bus(bus_url, settings, settings.connect_timeout_s)
            store = await connect_store(database_url, settings, name)
    outage.passed()
    return store


async def _run(name: str, setup: Callable[[ServiceContext], Awaitable[None]], settings: Settings) -> None:
    bus_url, database_url = required_urls(settings)
    OUTAGES.exit_after_s = settings.outage_exit_s
    connected: list[EventStore] = []

    async def ping_store() -> None:
        if not connected:
            raise ConnectionError("not connected yet")
        await connected[0].ping()

    transport = transport_of(bus_url)
    health = HealthServer({transport: lambda: check_bus(bus_url, settings, 2.0), "postgres": ping_store})
    if settings.http_port is not None:  # first: probes answer "not ready" while servers are awaited
        await health.start(settings.http_host, settings.http_port)
    try:
        store = await wait_for_servers(bus_url, database_url, settings, name)
    except BaseException:
        await health.stop()
        raise
    connected.append(store)
    bus = open_bus(settings, service=name, url=bus_url)
    health.checks[transport] = bus.ping  # the bus's own connection from now on, not one per probe
    health.checks["groups"] = bus.check_groups
    ctx = ServiceContext(name=name, settings=settings, bus=bus, store=store)
    tasks: list[asyncio.Task[None]] = []
    try:
        await _serve(ctx, setup, health, tasks)
    finally:
        log.info("%s stopping", name)
        await _stop(ctx, health, tasks)


async def _serve(
    ctx: ServiceContext,
    setup: Callable[[ServiceContext], Awaitable[None]],
    health: HealthServer,
    tasks: list[asyncio.Task[None]],
) -> None:
    """Set the service up, consume and run its background tasks until a stop signal, or
    until a background task fails (``BackgroundTaskFailed``)."""
    stop = asyncio.Event()

    def drain() -> None:
        health.draining = True  # probes see the stop while the bus and store still wind down
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, drain)
    await setup(ctx)
    await ctx.bus.start()
    health.started = True
    tasks += [asyncio.create_task(job(), name=_task_name(job)) for job in (*ctx.background, watchdog)]
    log.info(
        "%s ready (consumer %s, namespace %s, event loop %s)",
        ctx.name,
        ctx.settings.consumer,
        ctx.settings.namespace,
        type(loop).__module__.split(".")[0],
    )
    print(f"alphasaga-{ctx.name}: ready", file=sys.stderr, flush=True)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        if t.done() and not t.cancelled() and (exc := t.exception()) is not None:
            if isinstance(exc, ConditionOverdue):
                log.error("%s", exc)
                raise exc
            log.error("background task %s failed: %r", t.get_name(), exc, exc_info=exc)
            raise BackgroundTaskFailed(f"{t.get_name()} failed: {type(exc).__name__}: {exc}") from exc


async def _stop(ctx: ServiceContext, health: HealthServer, tasks: list[asyncio.Task[None]]) -> None:
    """Every step of a stop has a deadline: a task or connection that does not let go must
    not keep the process alive (work in flight stays pending for the reclaimer)."""
    for t in tasks:
        t.cancel()
    deadline = ctx.settings.stop_timeout_s
    if tasks:
        _, stuck = await asyncio.wait(tasks, timeout=deadline)
        for t in stuck:
            log.warning("background task %s did not stop in time", t.get_name())
    for t in tasks:
        if t.done() and not t.cancelled() and t.exception() is not None:
            log.debug("background task %s ended with %r", t.get_name(), t.exception())
    try:
        await asyncio.wait_for(ctx.bus.stop(), deadline)
    except TimeoutError:
        log.warning("the bus did not stop within %ss", deadline)
    try:
        await asyncio.wait_for(ctx.store.close(), deadline)
    except TimeoutError:
        log.warning("database connections still in use after %ss: closing them", deadline)
        ctx.store.terminate()
    await health.stop()


def _task_name(job: Callable[[], object]) -> str:
    """``Relay.run`` -> ``relay``: the name a failure is reported under."""
    owner = getattr(job, "__self__", None)
    return type(owner).__name__.lower() if owner is not None else getattr(job, "__name__", "background")


def _loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if settings.event_loop == "uvloop":
        import uvloop  # a dependency of this package: a missing one is an install error, not a fallback

        return uvloop.new_event_loop
    return None


def run_service(name: str, setup: Callable[[ServiceContext], Awaitable[None]]) -> None:
    """Entry point of every service's ``__main__``. Exits 2 with one line when a
    dependency is missing or unreachable, or a setting is invalid."""
    try:
        settings = Settings()
    except InvalidSetting as exc:
        print(f"alphasaga-{name}: invalid setting: {exc.name}: {exc.reason} (got {exc.value!r})", file=sys.stderr)
        sys.exit(2)
    telemetry.setup_logging(name, settings.log_level)
    telemetry.setup_tracing(name, settings.otlp_endpoint, settings.trace_sample_ratio)
    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings)) as runner:
            runner.run(_run(name, setup, settings))
    except (ConfigError, StartupError) as exc:
        print(f"alphasaga-{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    except (BackgroundTaskFailed, ConditionOverdue) as exc:
        print(f"alphasaga-{name}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        telemetry.shutdown_tracing()
