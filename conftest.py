"""Fixtures for every test in the workspace: real Redis and PostgreSQL.

Servers come from ALPHASAGA_TEST_REDIS_URL / ALPHASAGA_TEST_DATABASE_URL when set (CI
points them at the machine's servers), otherwise embedded servers are started once per
session. Each test gets its own stream namespace and its own database schema, so tests
run in any order and never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
import redis.asyncio as aioredis

from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore

if TYPE_CHECKING:
    from tests.support.harness import Harness

# The session's container engine API for the tests that start containers (testcontainers).
pytest_plugins = ["tests.support.podman_socket"]


class Servers:
    def __init__(self, redis_url: str, database_url: str) -> None:
        self.redis_url = redis_url
        self.database_url = database_url


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    redis_url = os.environ.get("ALPHASAGA_TEST_REDIS_URL")
    database_url = os.environ.get("ALPHASAGA_TEST_DATABASE_URL")
    embedded = None
    if not (redis_url and database_url):
        from alphasaga_cli.embedded import start_embedded

        # Not under pytest's base directory: run as root, embedded PostgreSQL serves as a
        # user of its own and opens the data's parent directories to it, and any other
        # pytest run as root closes pytest's directory again (0700) under it.
        data = Path(tempfile.mkdtemp(prefix="alphasaga-embedded-"))
        embedded = start_embedded(data, redis=not redis_url, postgres=not database_url, say=print)
        redis_url = redis_url or embedded.redis_url
        database_url = database_url or embedded.database_url
    assert redis_url and database_url
    yield Servers(redis_url, database_url)
    if embedded is not None:
        embedded.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def schema(namespace: str) -> str:
    return f"t_{namespace}"


@pytest.fixture
def settings(servers: Servers, namespace: str, schema: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for one test: fast reclaiming so that redelivery tests take seconds. The
    test's streams, keys and schema are removed afterwards, whoever created them (the
    test itself or the service processes it started)."""
    yield Settings(
        redis_url=servers.redis_url,
        database_url=servers.database_url,
        namespace=namespace,
        database_schema=schema,
        data_dir=tmp_path / "data",
        consumer=f"test-{uuid.uuid4().hex[:6]}",
        reclaim_idle_ms=300,
        reclaim_interval_ms=100,
        block_ms=100,
    )
    # In a thread of its own: the test's event loop may still be set in this one.
    cleaner = threading.Thread(target=asyncio.run, args=(_remove(servers, namespace, schema),))
    cleaner.start()
    cleaner.join()


async def _remove(servers: Servers, namespace: str, schema: str) -> None:
    client = aioredis.from_url(servers.redis_url)
    keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    await drop_schema(servers.database_url, schema)


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """NATS with JetStream: ALPHASAGA_TEST_NATS_URL (CI sets it), else a ``nats-server -js``
    of this session's own. Without either the test fails, saying why: none is skipped."""
    url = os.environ.get("ALPHASAGA_TEST_NATS_URL")
    if url:
        yield url
        return
    from tests.support.own_nats import OwnNats

    own = OwnNats()
    own.start()
    yield own.url
    own.remove()


@pytest.fixture(params=["redis", "jetstream"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which transport a test parametrised over both runs on."""
    return str(request.param)


@pytest.fixture
def bus_settings(settings: Settings, transport: str, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """``settings`` on the test's transport; on JetStream, the namespace's streams and
    buckets are deleted afterwards (the server may be shared)."""
    if transport == "redis":
        yield settings
        return
    url: str = request.getfixturevalue("nats_url")
    yield settings.model_copy(update={"broker_url": url})
    from tests.support.own_nats import remove_namespace

    cleaner = threading.Thread(target=asyncio.run, args=(remove_namespace(url, settings.namespace),))
    cleaner.start()
    cleaner.join()


@pytest.fixture
def bus_env(env: dict[str, str], bus_settings: Settings) -> dict[str, str]:
    """``env`` on the test's transport."""
    return {**env, "ALPHASAGA_BROKER_URL": bus_settings.broker_url or ""}


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """Environment for service subprocesses that belong to this test."""
    out = dict(os.environ)
    out.update(
        {
            "ALPHASAGA_REDIS_URL": settings.redis_url or "",
            "ALPHASAGA_DATABASE_URL": settings.database_url or "",
            "ALPHASAGA_NAMESPACE": settings.namespace,
            "ALPHASAGA_DATABASE_SCHEMA": settings.database_schema,
            "ALPHASAGA_DATA_DIR": str(settings.data_dir),
            "ALPHASAGA_RECLAIM_IDLE_MS": str(settings.reclaim_idle_ms),
            "ALPHASAGA_RECLAIM_INTERVAL_MS": str(settings.reclaim_interval_ms),
            "ALPHASAGA_BLOCK_MS": str(settings.block_ms),
            "ALPHASAGA_RELAY_POLL_MS": "20",
        }
    )
    out.pop("ALPHASAGA_CONSUMER", None)
    out.pop("ALPHASAGA_ENV", None)
    out.pop("ALPHASAGA_BROKER_URL", None)  # Redis, unless a test asks for its transport (bus_env)
    return out


@pytest.fixture
async def redis(servers: Servers, namespace: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(servers.redis_url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{namespace}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def store(servers: Servers, schema: str) -> AsyncIterator[EventStore]:
    es = await EventStore.connect(servers.database_url, schema)
    yield es
    await es.close()
    await drop_schema(servers.database_url, schema)


async def drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def h(
    settings: Settings, env: dict[str, str], store: EventStore, redis: aioredis.Redis, tmp_path: Path
) -> AsyncIterator[Harness]:
    """Real orchestrator and simulated-worker processes for this test, stopped after it."""
    from tests.support.harness import Harness

    harness = Harness(settings, env, store, redis, tmp_path)
    yield harness
    harness.stop_all()


@pytest.fixture
async def h_on(
    bus_settings: Settings, bus_env: dict[str, str], store: EventStore, redis: aioredis.Redis, tmp_path: Path
) -> AsyncIterator[Harness]:
    """``h`` on the test's transport (``transport``: both, one after the other)."""
    from tests.support.harness import Harness

    harness = Harness(bus_settings, bus_env, store, redis, tmp_path)
    yield harness
    harness.stop_all()
