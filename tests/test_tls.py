"""Issue #30: TLS to Redis (``rediss://``) and PostgreSQL (``sslmode=verify-full``) is honoured
by every client: the services, the HTTP API and the command line.

Redis and PostgreSQL are the test's own (the machine's cannot be restarted with TLS), with
certificates from ``infra/tls/make-certs.sh`` (``make certs``): Redis has no plain port,
and PostgreSQL refuses every connection that is not TLS. The URLs carry the CA's path
(``ssl_ca_certs``, ``sslrootcert``), as an operator's would. A CA that did not sign the
servers' certificate is refused by every client."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from alphasaga_cli.stack import WITH_API, Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.config import Settings
from alphasaga_shared.errors import Unavailable
from tests.support.tls_servers import TlsPostgres, TlsRedis, make_certs

SAGA_TIMEOUT = 300


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("tls") / "certs")


@pytest.fixture(scope="module")
def tls_servers(certs: Path) -> Iterator[tuple[TlsRedis, TlsPostgres]]:
    redis_server, postgres = TlsRedis(certs), TlsPostgres(certs)
    try:
        redis_server.start()
        postgres.start()
        yield redis_server, postgres
    finally:
        redis_server.remove()
        postgres.remove()


@pytest.fixture(scope="module")
def stack(tls_servers: tuple[TlsRedis, TlsPostgres], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_server, postgres = tls_servers
    settings = Settings(
        redis_url=redis_server.url,
        database_url=postgres.url,
        namespace=f"tls{uuid.uuid4().hex[:6]}",
        data_dir=tmp_path_factory.mktemp("tls-stack"),
        service_users="on",
    )
    s = Stack(settings, say=print, services=WITH_API, extra_env={"ALPHASAGA_API_PORT": "0"})
    try:
        s.start(timeout=120)
        yield s
    finally:
        s.stop()


async def tls_sessions(owner_url: str) -> dict[str, bool]:
    """Whether each login's PostgreSQL sessions use TLS (``pg_stat_ssl``), by role."""
    conn = await asyncpg.connect(owner_url)
    try:
        rows = await conn.fetch(
            "SELECT a.usename, bool_and(s.ssl) AS ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
            " WHERE a.usename IS NOT NULL AND a.backend_type = 'client backend' GROUP BY a.usename"
        )
    finally:
        await conn.close()
    return {r["usename"]: r["ssl"] for r in rows}


def ready(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


async def test_a_saga_completes_over_tls_and_the_api_and_the_cli_use_it_too(stack: Stack) -> None:
    front_end = stack.front_end_settings()
    assert front_end.redis_url and front_end.redis_url.startswith("rediss://")
    assert front_end.database_url and "sslmode=verify-full" in front_end.database_url
    async with AlphaSaga(front_end) as client:
        request = ResearchRequest(dataset="sp500", start="2012-01-01", end="2016-12-31")
        submitted = await client.submit(request)
        follow = client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=SAGA_TIMEOUT)
        events = [u.event async for u in follow]
    assert isinstance(events[-1], sg.SagaCompleted), events[-1]

    port = re.search(r"alphasaga-api: ready on http://[^:]+:(\d+)", (stack.log_dir / "api.log").read_text())
    assert port, "the api did not say where it listens"
    body = await asyncio.to_thread(ready, f"http://127.0.0.1:{port.group(1)}/health/ready")
    assert '"redis":{"status":"ok"' in body and '"postgres":{"status":"ok"' in body, body

    cli = subprocess.run(
        [sys.executable, "-m", "alphasaga_cli", "status", str(submitted.saga_id)],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0 and "COMPLETED" in cli.stdout, cli.stdout + cli.stderr

    sessions = await tls_sessions(stack.database_url)
    assert stack.database_logins is not None
    names = stack.database_logins.names()
    for role in (names[login] for login in stack.database_logins.passwords):  # every login the stack gave
        assert sessions.get(role) is True, sessions


async def test_a_certificate_the_named_ca_did_not_sign_is_refused(
    tls_servers: tuple[TlsRedis, TlsPostgres], tmp_path: Path
) -> None:
    redis_server, postgres = tls_servers
    other_ca = make_certs(tmp_path / "other") / "ca.crt"
    settings = Settings(
        redis_url=redis_server.url.replace(str(redis_server.certs / "ca.crt"), str(other_ca)),
        database_url=postgres.url.replace(str(postgres.certs / "ca.crt"), str(other_ca)),
        namespace=f"tls{uuid.uuid4().hex[:6]}",
        connect_timeout_s=5,
    )
    from alphasaga_client.connections import connect_redis, connect_store

    with pytest.raises(Unavailable, match="certificate verify failed"):
        await connect_redis(settings)
    with pytest.raises(Unavailable, match="certificate verify failed"):
        await connect_store(settings)
    service = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alphasaga_reasoning",
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")},
            "ALPHASAGA_REDIS_URL": settings.redis_url or "",
            "ALPHASAGA_DATABASE_URL": settings.database_url or "",
        },
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(service.communicate(), 120)
    assert service.returncode == 2 and b"certificate verify failed" in err, err
