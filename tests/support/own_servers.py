"""A PostgreSQL cluster and a Redis server of a test's own, on free ports, that the test
may crash, stop and start again (the machine's servers are shared: never those).

PostgreSQL comes from the machine's binaries (``/usr/lib/postgresql/*/bin``, Debian's
packages) and, as the server refuses to run as root, runs as the ``postgres`` user when
the test is root. Redis is ``redis-server`` with an append-only file, so that a stop keeps
its streams, groups and pending lists as a restart of a real deployment does.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return Path(found[-1]).parent if found else None


class OwnPostgres:
    """``initdb`` into a fresh directory; ``start`` runs the postmaster in the foreground
    (its pid is ours to kill -9); ``crash`` kills it so; ``start`` again recovers."""

    def __init__(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql")
        self.bin = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alphasaga-own-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:  # the server refuses root: its files are the postgres user's
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            user=self.user,
            check=True,
            capture_output=True,
            timeout=120,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> None:
        """Start the postmaster and wait until it accepts connections. After a crash its old
        backends may still hold the shared memory a moment: the start is tried again."""
        deadline = time.monotonic() + timeout
        while True:
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        str(self.bin / "postgres"),
                        "-D",
                        str(self.data),
                        "-p",
                        str(self.port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"unix_socket_directories={self.dir}",
                        "-c",
                        "max_connections=300",
                    ],
                    user=self.user,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if asyncio.run(self._accepting(min(30.0, max(1.0, deadline - time.monotonic())))):
                return
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.5)

    async def _accepting(self, within: float) -> bool:
        end = time.monotonic() + within
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                return False  # it gave up (shared memory still held): start it again
            try:
                conn = await asyncpg.connect(self.url, timeout=2)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            await conn.close()
            return True
        return False

    def crash(self) -> None:
        """kill -9 the postmaster, as a crash does; its backends notice and end."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedis:
    """``redis-server`` on a free port with an append-only file: ``stop`` (SIGTERM) writes
    it out, ``start`` loads it again."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.exe = exe
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alphasaga-own-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.dir),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        asyncio.run(self._answering(timeout))

    async def _answering(self, within: float) -> None:
        end = time.monotonic() + within
        client = aioredis.from_url(self.url, socket_connect_timeout=1)
        try:
            while True:
                try:
                    await client.ping()
                    return
                except Exception:
                    if time.monotonic() > end:
                        raise
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # writes the append-only file out, then exits
            self.proc.wait(30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
