"""DBOS Transact as a peer: its system database is a database of its own on the
bench's PostgreSQL server, made on entry and dropped on exit, and DBOS itself runs
in a child process (``bench.peers.dbos_app``) that the bench drives over a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from . import DBOS_REPLY, ROOT, PeerUnavailable, StartedPeer, descendants

START_TIMEOUT = 120.0
COMMAND_TIMEOUT = 900.0


def database_url_for(server_url: str, database: str) -> str:
    """``server_url`` with its database name replaced by ``database``."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


class DbosPeer(StartedPeer):
    name = "DBOS Transact"

    def __init__(self, server_url: str) -> None:
        """``server_url``: any database on the PostgreSQL server to use (it connects
        there to create and drop its own one)."""
        self._server_url = server_url
        # Its own name a run: two benches at once never share or drop each other's.
        self.database = f"alphasaga_bench_dbos_{uuid.uuid4().hex[:8]}"
        self._proc: asyncio.subprocess.Process | None = None
        self._log: Path | None = None
        self._created = False

    async def _start(self) -> None:
        try:
            conn = await asyncpg.connect(self._server_url)
        except (OSError, asyncpg.PostgresError) as e:
            raise PeerUnavailable(f"{self.name}: PostgreSQL unreachable ({type(e).__name__}: {e})") from e
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
            self._created = True
        finally:
            await conn.close()
        fd, log = tempfile.mkstemp(prefix="alphasaga-dbos-", suffix=".log")
        self._log = Path(log)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.peers.dbos_app",
                database_url_for(self._server_url, self.database),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=fd,
                limit=1 << 22,  # a reply is one line: the latencies of a long run
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        finally:
            os.close(fd)
        try:
            await asyncio.wait_for(self._read_reply(), START_TIMEOUT)
        except TimeoutError as e:
            raise PeerUnavailable(f"{self.name}: not ready within {START_TIMEOUT:.0f} s ({self._tail()})") from e

    async def _read_reply(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        while line := (await self._proc.stdout.readline()).decode(errors="replace"):
            if line.startswith(DBOS_REPLY):
                reply: dict[str, Any] = json.loads(line[len(DBOS_REPLY) :])
                if "error" in reply:
                    raise RuntimeError(f"{self.name}: {reply['error']}")
                return reply
        await self._proc.wait()
        raise PeerUnavailable(f"{self.name}: its process exited ({self._proc.returncode}): {self._tail()}")

    def _tail(self) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError):
            lines = self._log.read_text(errors="replace").strip().splitlines()
            return (lines[-1] if lines else "no output")[:300]
        return ""

    async def _command(self, **command: Any) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(command) + "\n").encode())
        await self._proc.stdin.drain()
        return await asyncio.wait_for(self._read_reply(), COMMAND_TIMEOUT)

    async def burst(self, n: int) -> float:
        return float((await self._command(cmd="burst", n=n))["seconds"])

    async def one_in_flight(self, n: int, warmup: int = 5) -> list[float]:
        return [float(ms) for ms in (await self._command(cmd="one", n=n, warmup=warmup))["ms"]]

    def pids(self) -> set[int]:
        if self._proc is None or self._proc.returncode is not None:
            return set()
        return descendants([self._proc.pid])

    async def __aexit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.write(b'{"cmd": "stop"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                await proc.wait()
        if self._created:
            conn = await asyncpg.connect(self._server_url)
            try:
                # FORCE ends any session DBOS left open, so no backend outlives the run.
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
                self._created = False
            finally:
                await conn.close()
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None
