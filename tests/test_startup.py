"""Production mode: a missing or unreachable dependency is one line and a non-zero exit,
within seconds, never a fallback to embedded servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.helpers import ROOT, Proc


def run(args: list[str], extra_env: dict[str, str]) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
    env.update(extra_env)
    started = time.monotonic()
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr.strip(), time.monotonic() - started


@pytest.mark.parametrize("service", ["orchestrator", "reasoning"])
def test_production_without_urls_names_what_is_missing(service: str) -> None:
    code, err, _ = run([sys.executable, "-m", f"alphasaga_{service}"], {"ALPHASAGA_ENV": "production"})
    assert code == 2
    assert err.splitlines()[-1] == (
        f"alphasaga-{service}: ALPHASAGA_REDIS_URL (or ALPHASAGA_BROKER_URL) and ALPHASAGA_DATABASE_URL not set "
        "(required when ALPHASAGA_ENV=production)"
    )
    assert len(err.splitlines()) == 1, err  # and at once: run() gives up on a process after 60 s


def start_up_cost() -> float:
    """How long the orchestrator takes to start and stop now, on this machine's current load:
    in production with no URL it exits as soon as it has read its settings."""
    return run([sys.executable, "-m", "alphasaga_orchestrator"], {"ALPHASAGA_ENV": "production"})[2]


# The connect timeout the code promises to give up after (ALPHASAGA_CONNECT_TIMEOUT_S), and the
# margin for its retries' pauses: the one duration these tests assert, net of the start-up.
CONNECT_TIMEOUT_S = 2
GIVE_UP_MARGIN_S = 8


def test_production_with_unreachable_redis_fails_fast(servers: object) -> None:
    code, err, took = run(
        [sys.executable, "-m", "alphasaga_orchestrator"],
        {
            "ALPHASAGA_ENV": "production",
            "ALPHASAGA_REDIS_URL": "redis://127.0.0.1:1/0",
            "ALPHASAGA_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres",
            "ALPHASAGA_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
        },
    )
    assert code == 2
    assert err.startswith("alphasaga-orchestrator: cannot reach Redis at redis://127.0.0.1:1/0"), err
    assert len(err.splitlines()) == 1
    assert took - start_up_cost() < CONNECT_TIMEOUT_S + GIVE_UP_MARGIN_S


def test_production_with_unreachable_postgres_fails_fast(servers: object) -> None:
    redis_url = servers.redis_url  # type: ignore[attr-defined]
    code, err, took = run(
        [sys.executable, "-m", "alphasaga_orchestrator"],
        {
            "ALPHASAGA_ENV": "production",
            "ALPHASAGA_REDIS_URL": redis_url,
            "ALPHASAGA_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres",
            "ALPHASAGA_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
        },
    )
    assert code == 2
    assert err.startswith("alphasaga-orchestrator: cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:1"), err
    assert took - start_up_cost() < CONNECT_TIMEOUT_S + GIVE_UP_MARGIN_S


def test_make_run_in_production_refuses_embedded_servers() -> None:
    code, err, _ = run([sys.executable, "-m", "alphasaga_cli", "run"], {"ALPHASAGA_ENV": "production"})
    assert code == 2
    assert "ALPHASAGA_REDIS_URL (or ALPHASAGA_BROKER_URL) and ALPHASAGA_DATABASE_URL not set" in err
    assert "embedded" not in err.lower()


async def test_a_worker_started_while_postgres_is_down_waits_not_ready_and_recovers_by_itself(
    env: dict[str, str], settings: Any, tmp_path: Path
) -> None:
    """With ALPHASAGA_WAIT_FOR_SERVERS_S (as containers set it), a worker whose database is
    down waits for it, answers its probes "not ready" meanwhile, and starts once it is up."""
    from tests.test_health import free_port, get

    db = urlsplit(settings.database_url)
    proxy_port, http_port = free_port(), free_port()
    down = db._replace(netloc=f"{db.username or 'postgres'}@127.0.0.1:{proxy_port}").geturl()
    worker = Proc.module(
        "alphasaga_backtest",
        {
            **env,
            "ALPHASAGA_ENV": "production",
            "ALPHASAGA_DATABASE_URL": down,
            "ALPHASAGA_WAIT_FOR_SERVERS_S": "120",
            "ALPHASAGA_CONNECT_TIMEOUT_S": "1",
            "ALPHASAGA_HTTP_PORT": str(http_port),
            "ALPHASAGA_HTTP_HOST": "127.0.0.1",
        },
        tmp_path / "worker.log",
    )
    proxy: asyncio.Server | None = None
    try:
        await worker.wait_for("retrying with backoff", timeout=60)  # one line for the outage
        assert (await asyncio.to_thread(get, f"http://127.0.0.1:{http_port}/health/live"))[0] == 200
        status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{http_port}/health/ready")
        assert status == 503 and "not connected yet" in body, body
        assert worker.popen.poll() is None, "it waits rather than exit"

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream_reader, upstream_writer = await asyncio.open_connection(db.hostname, db.port or 5432)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                dst.close()

            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

        proxy = await asyncio.start_server(forward, "127.0.0.1", proxy_port)  # the database comes back
        await worker.wait_for("alphasaga-backtest: ready", timeout=90)
        assert "recovered after" in worker.text()
        # In a thread: this loop forwards the worker's database traffic meanwhile.
        status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{http_port}/health/ready")
        assert status == 200, body
    finally:
        worker.stop()
        if proxy is not None:
            proxy.close()


async def test_a_service_runs_on_uvloop_when_asked(env: dict[str, str], tmp_path: Path) -> None:
    """ALPHASAGA_EVENT_LOOP=uvloop (a lever of issue #28, measured by `make bench levers`)
    starts the service on uvloop's loop, which its ready line names."""
    worker = Proc.module(
        "alphasaga_backtest",
        {**env, "ALPHASAGA_EVENT_LOOP": "uvloop", "ALPHASAGA_LOG_LEVEL": "INFO"},
        tmp_path / "worker.log",
    )
    try:
        await worker.wait_for("alphasaga-backtest: ready", timeout=90)
        assert "event loop uvloop" in worker.text(), worker.text()[-2000:]
    finally:
        worker.stop()


def test_an_unknown_event_loop_is_one_line_and_exit_2() -> None:
    code, err, _ = run([sys.executable, "-m", "alphasaga_backtest"], {"ALPHASAGA_EVENT_LOOP": "trio"})
    assert code == 2, err
    expected = "ALPHASAGA_EVENT_LOOP: Invalid enum value 'trio' (got 'trio')"
    assert err == f"alphasaga-backtest: invalid setting: {expected}", err


@pytest.mark.parametrize(("module", "name"), [("alphasaga_api", "api"), ("alphasaga_api.owner", "migrate")])
def test_the_api_and_the_owner_step_refuse_a_wrong_setting_in_one_line(module: str, name: str) -> None:
    code, err, _ = run([sys.executable, "-m", module], {"ALPHASAGA_MAX_RECORDS": "0"})
    assert code == 2, err
    assert err == f"alphasaga-{name}: invalid setting ALPHASAGA_MAX_RECORDS: Expected `int` >= 1 (got '0')", err
