"""Issue #30: a full research saga with every service on its own least-privileged login.

The stack runs with ``ALPHASAGA_SERVICE_USERS=on`` on the test's servers: it runs the owner
step (migrations, roles, logins) with the URL's login, makes a Redis ACL user and a
PostgreSQL role per service under the test's namespace and schema, and starts each
service on its own. The test's own client is the front ends' login. Afterwards the
logins are gone from both servers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import Service
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.config import Settings
from conftest import Servers
from tests.support.helpers import remove_stack_data

SAGA_TIMEOUT = 300
SERVICES = [s.value for s in Service]


def on_own_logins(servers: Servers, data_dir: Path) -> Settings:
    """A stack of a namespace and schema of its own that makes each service's logins."""
    ns = f"lp{uuid.uuid4().hex[:8]}"
    return Settings(
        redis_url=servers.redis_url,
        database_url=servers.database_url,
        namespace=ns,
        database_schema=f"t_{ns}",
        data_dir=data_dir,
        service_users="on",
    )


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = on_own_logins(servers, tmp_path_factory.mktemp("least-privilege"))
    ns = settings.namespace
    s = Stack(settings, say=print)
    try:
        s.start(timeout=120)
        yield s
    finally:
        s.stop()
        asyncio.run(remove_stack_data(servers.redis_url, servers.database_url, ns, settings.database_schema))


async def redis_logins(admin_url: str) -> dict[str, set[str]]:
    """Redis's connected clients by user: each service's connections name it (``CLIENT LIST``);
    and who was refused what (CLIENT SETINFO aside: redis-py sends it on connect and ignores
    the refusal; Redis 7.0 does not know it, so it cannot be granted there, and Redis 7.2+ or
    Valkey, such as the embedded one, log it)."""
    admin = aioredis.from_url(admin_url, decode_responses=True)
    try:
        clients: list[dict[str, Any]] = await admin.client_list()
        users = {c["user"] for c in clients}
        denials: list[Any] = await admin.execute_command("ACL", "LOG")  # type: ignore[no-untyped-call]
    finally:
        await admin.aclose()
    refused = {str(_field(d, "username")) for d in denials if _field(d, "object") != "client|setinfo"}
    return {"users": users, "denied": refused}


def _field(entry: Any, name: str) -> Any:
    if isinstance(entry, dict):
        return entry.get(name)
    pairs = dict(zip(entry[::2], entry[1::2], strict=True))
    return pairs.get(name)


async def database_logins(owner_url: str, pids: dict[str, int]) -> dict[str, set[str]]:
    """The roles each service's PostgreSQL sessions log in as (``pg_stat_activity``): its
    sessions are named after it and its pid (other stacks share the server)."""
    conn = await asyncpg.connect(owner_url)
    try:
        rows = await conn.fetch("SELECT application_name, usename FROM pg_stat_activity WHERE usename IS NOT NULL")
    finally:
        await conn.close()
    found: dict[str, set[str]] = {service: set() for service in pids}
    for r in rows:
        for service, pid in pids.items():
            if r["application_name"].endswith(f" pid={pid}"):
                found[service].add(r["usename"])
    return found


async def test_a_research_saga_completes_with_every_service_on_its_own_login(stack: Stack) -> None:
    front_end = stack.front_end_settings()
    assert front_end.redis_url != stack.redis_url and front_end.database_url != stack.database_url
    async with AlphaSaga(front_end) as client:
        submitted = await client.submit(ResearchRequest(dataset="sp500", start="2012-01-01", end="2016-12-31"))  # type: ignore[arg-type]
        events = [
            u.event async for u in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=SAGA_TIMEOUT)
        ]
    assert isinstance(events[-1], sg.SagaCompleted), events[-1]

    ns, schema = stack.settings.namespace, stack.settings.database_schema
    redis = await redis_logins(stack.redis_url)
    assert {f"{ns}-{s}" for s in SERVICES} <= redis["users"], redis["users"]
    assert not {u for u in redis["denied"] if u.startswith(f"{ns}-")}, "a service was refused something it needs"
    sessions = await database_logins(stack.database_url, {s: p.pid for s, p in stack.processes.items()})
    assert sessions == {s: {f"{schema}_{s}"} for s in SERVICES}, sessions


def test_the_stack_removes_the_logins_it_made(servers: Servers, tmp_path: Path) -> None:
    settings = on_own_logins(servers, tmp_path)
    ns = settings.namespace
    stack = Stack(settings, say=print, services=())
    try:
        stack.start(timeout=60)
        # A Redis user and a PostgreSQL role each for the services and the api; and the archive
        # job's role (NOLOGIN here: the stack runs no archive job).
        assert asyncio.run(_logins(servers, ns)) == (len(SERVICES) + 1, len(SERVICES) + 2)
    finally:
        stack.stop()
        asyncio.run(remove_stack_data(servers.redis_url, servers.database_url, ns, settings.database_schema))
    assert asyncio.run(_logins(servers, ns)) == (0, 0)


async def _logins(servers: Servers, ns: str) -> tuple[int, int]:
    """How many Redis users and PostgreSQL roles carry the namespace."""
    admin = aioredis.from_url(servers.redis_url, decode_responses=True)
    try:
        names: list[str] = await admin.execute_command("ACL", "USERS")  # type: ignore[no-untyped-call]
    finally:
        await admin.aclose()
    conn = await asyncpg.connect(servers.database_url)
    try:
        roles = await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", f"t\\_{ns}\\_%")
    finally:
        await conn.close()
    return sum(n.startswith(f"{ns}-") for n in names), roles
