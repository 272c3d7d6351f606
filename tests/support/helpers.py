"""Helpers for tests that drive real processes and real servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from alphasaga_cli.stack import Stack
from alphasaga_shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def eventually_sync(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """``eventually`` for a test without an event loop of its own (Playwright's sync API
    holds the thread's)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {result!r})")
        time.sleep(interval)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {result!r})")
        await asyncio.sleep(interval)


class Proc:
    """A child process whose output goes to a log file we can wait on."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = log.open("ab")
        self.popen = subprocess.Popen(args, env=env, stdout=self._fh, stderr=subprocess.STDOUT, cwd=ROOT)

    @classmethod
    def module(cls, module: str, env: dict[str, str], log: Path, *args: str) -> Proc:
        return cls([sys.executable, "-m", module, *args], env, log)

    @classmethod
    def script(cls, script: Path, env: dict[str, str], log: Path, *args: str) -> Proc:
        return cls([sys.executable, str(script), *args], env, log)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def wait_for(self, needle: str, timeout: float = 30.0) -> None:
        async def seen() -> bool:
            if self.popen.poll() is not None and needle not in self.text():
                raise AssertionError(
                    f"process exited ({self.popen.returncode}) before {needle!r}:\n{self.text()[-3000:]}"
                )
            return needle in self.text()

        await eventually(seen, timeout)

    def kill9(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._fh.close()
        return self.popen.returncode

    def wait_exit(self, timeout: float = 30.0) -> int:
        start = time.monotonic()
        while self.popen.poll() is None:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"process still running after {timeout}s")
            time.sleep(0.02)
        return self.popen.returncode


@contextmanager
def running_stack(
    redis_url: str, database_url: str, data_dir: Path, prefix: str, *, broker_url: str | None = None
) -> Iterator[Stack]:
    """The five services as processes in a namespace and schema of their own, removed after;
    on JetStream when ``broker_url`` is given."""
    ns = f"{prefix}{uuid.uuid4().hex[:8]}"
    settings = Settings(
        redis_url=redis_url,
        broker_url=broker_url,
        database_url=database_url,
        namespace=ns,
        database_schema=f"t_{ns}",
        data_dir=data_dir,
    )
    stack = Stack(settings, say=print, extra_env={"ALPHASAGA_BROKER_URL": broker_url or ""})
    try:
        stack.start(timeout=120)
        yield stack
    finally:
        stack.stop()
        asyncio.run(remove_stack_data(redis_url, database_url, ns, settings.database_schema))
        if broker_url:
            from tests.support.own_nats import remove_namespace

            asyncio.run(remove_namespace(broker_url, ns))


async def remove_stack_data(redis_url: str, database_url: str, namespace: str, schema: str) -> None:
    """A test stack leaves nothing behind: its streams and guard keys, and its schema."""
    redis = aioredis.from_url(redis_url)
    keys = [k async for k in redis.scan_iter(match=f"{namespace}:*", count=5000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def exported(line: str) -> tuple[str, str] | None:
    """``(NAME, value)`` of a line ``export ALPHASAGA_NAME=value``, as ``alphasaga up``
    prints its settings for the shell; None for any other line."""
    name, sep, value = line.strip().removeprefix("export ").partition("=")
    if not (sep and line.startswith("export ") and name.startswith("ALPHASAGA_")):
        return None
    return name, value
