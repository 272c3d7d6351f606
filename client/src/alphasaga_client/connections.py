"""Settings and connections, with short timeouts and one-line errors: an operator who
mistyped a URL learns it within seconds, not from a traceback."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from alphasaga_shared.config import InvalidSetting, Settings, redact
from alphasaga_shared.errors import InvalidRequest, Unavailable

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from alphasaga_shared.bus.jetstream import JetStreamBus
    from alphasaga_shared.eventstore import EventStore


def load_settings() -> Settings:
    try:
        return Settings()
    except InvalidSetting as exc:
        raise InvalidRequest(str(exc)) from None


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def connect_redis(settings: Settings, *, max_connections: int = 100) -> aioredis.Redis:
    import redis.asyncio as aioredis

    url = settings.redis_url
    if not url:
        raise Unavailable("ALPHASAGA_REDIS_URL is not set (`alphasaga up` starts the services and prints it)")
    timeout = settings.connect_timeout_s
    try:
        # A caller past the pool's size waits for a connection instead of failing at once.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, socket_connect_timeout=timeout, max_connections=max_connections, timeout=20
        )
        client = aioredis.Redis.from_pool(pool)
    except ValueError as exc:
        raise InvalidRequest(f"invalid ALPHASAGA_REDIS_URL {redact(url)}: {exc}") from None
    try:
        await asyncio.wait_for(client.ping(), timeout)
    except Exception as exc:
        await client.aclose()
        raise Unavailable(f"cannot reach Redis at {redact(url)}: {_reason(exc)}") from None
    return client


async def connect_jetstream(settings: Settings) -> JetStreamBus:
    """The JetStream bus, used as a log (publish, read, dead letters), never subscribed."""
    from alphasaga_shared.bus.jetstream import JetStreamBus

    url = settings.broker_url or ""
    bus = JetStreamBus(settings, service="client", url=url)
    try:
        await asyncio.wait_for(bus.ping(), settings.connect_timeout_s * 2)
    except Exception as exc:
        await bus.stop()
        raise Unavailable(f"cannot reach NATS JetStream at {redact(url)}: {_reason(exc)}") from None
    return bus


async def connect_store(
    settings: Settings, *, application_name: str = "alphasaga-client", max_size: int = 4
) -> EventStore:
    url = settings.database_url
    if not url:
        raise Unavailable("ALPHASAGA_DATABASE_URL is not set (`alphasaga up` starts the services and prints it)")
    from alphasaga_shared.eventstore import EventStore

    timeout = settings.connect_timeout_s
    try:
        return await asyncio.wait_for(
            EventStore.connect(
                url,
                settings.database_schema,
                max_size=max_size,
                timeout=timeout,
                application_name=application_name,
            ),
            timeout * 2,
        )
    except Exception as exc:
        raise Unavailable(f"cannot reach PostgreSQL at {redact(url)}: {_reason(exc)}") from None
