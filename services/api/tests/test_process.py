"""``python -m alphasaga_api`` as an operator starts it: refusals are one line and exit 2; a
500 is one log line without a traceback and leaves the connection usable; forwarded
headers are believed only from the proxies named."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx

from alphasaga_client import AlphaSaga
from alphasaga_shared.config import Settings
from conftest import Servers
from tests.support.helpers import Proc


def start(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
    return subprocess.run(
        [sys.executable, "-m", "alphasaga_api"], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_production_without_a_signing_key_exits_2_with_one_line(servers: Servers) -> None:
    done = start(ALPHASAGA_ENV="production", ALPHASAGA_REDIS_URL=servers.redis_url,
                 ALPHASAGA_DATABASE_URL=servers.database_url, ALPHASAGA_API_PORT="0")  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr.strip() == (
        "alphasaga-api: ALPHASAGA_API_SIGNING_KEY is not set (required when ALPHASAGA_ENV=production)"
    )


def test_an_unreachable_server_exits_2_with_one_line(servers: Servers) -> None:
    done = start(ALPHASAGA_REDIS_URL="redis://127.0.0.1:1/0", ALPHASAGA_DATABASE_URL=servers.database_url,
                 ALPHASAGA_API_PORT="0", ALPHASAGA_CONNECT_TIMEOUT_S="1")  # fmt: skip
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alphasaga-api: cannot reach Redis"), done.stderr


@contextmanager
def serving(settings: Settings, env: dict[str, str], log: Path, **extra: str) -> Iterator[tuple[Proc, int]]:
    """``python -m alphasaga_api`` on a port of its own, as an operator starts it."""
    proc = Proc.module(
        "alphasaga_api", {**env, "ALPHASAGA_API_PORT": "0", "ALPHASAGA_API_HOST": "127.0.0.1", **extra}, log
    )
    try:
        asyncio.run(proc.wait_for("alphasaga-api: ready on", timeout=60))
        found = re.search(r"ready on http://127\.0\.0\.1:(\d+)", proc.text())
        assert found, proc.text()
        yield proc, int(found.group(1))
    finally:
        proc.stop()


async def _admin_key(settings: Settings) -> str:
    async with AlphaSaga(settings) as client:
        _, key = await (await client.accounts()).create_key("test", "admin")
        return key


def test_a_500_leaves_no_traceback_in_the_log_and_the_connection_usable(
    settings: Settings, env: dict[str, str], tmp_path: Path
) -> None:
    with serving(settings, env, tmp_path / "api.log") as (proc, port):
        key = asyncio.run(_admin_key(settings))
        asyncio.run(_sql(settings, "ALTER TABLE users RENAME TO users_gone"))  # every key lookup now fails
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/v1/sagas", headers={"Authorization": f"Bearer {key}"})
        failed = conn.getresponse()
        body = json.loads(failed.read())
        assert failed.status == 500 and body["type"].endswith("/internal-error"), body
        # The same kept-alive connection (or, had the answer said Connection: close, a new one).
        conn.request("GET", "/health/live")
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read()) == {"status": "live"}
        conn.close()
    log = proc.text()
    incident = body["detail"].rsplit(" ", 1)[-1].rstrip(")")
    lines = [line for line in log.splitlines() if incident in line]
    assert len(lines) == 1 and "UndefinedTableError" in lines[0], log[-3000:]
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    settings: Settings, env: dict[str, str], tmp_path: Path
) -> None:
    def logins(port: int) -> list[int]:
        codes = []
        # Each "from" another address: one bucket unless a trusted proxy says so. Five, so that
        # one minute's window holds three even when the five straddle two windows.
        for i in range(5):
            r = httpx.post(f"http://127.0.0.1:{port}/v1/auth/login", json={"username": "x", "password": "y"},
                           headers={"X-Forwarded-For": f"198.51.100.{i}"}, timeout=30)  # fmt: skip
            codes.append(r.status_code)
        return codes

    with serving(settings, env, tmp_path / "a.log", ALPHASAGA_API_LOGIN_PER_MINUTE="2") as (_, port):
        assert 429 in logins(port)
    with serving(settings, env, tmp_path / "b.log", ALPHASAGA_API_LOGIN_PER_MINUTE="2",
                 ALPHASAGA_API_TRUSTED_PROXIES="127.0.0.1") as (_, port):  # fmt: skip
        assert logins(port) == [401] * 5


async def _sql(settings: Settings, statement: str) -> None:
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": settings.database_schema})
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
