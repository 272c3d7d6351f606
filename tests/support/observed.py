"""The five services as processes, each serving health and metrics on a port of its own
and exporting spans where the test says: the stack the observability tests look at."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alphasaga_cli.stack import SERVICES, Stack
from alphasaga_shared.config import Settings
from tests.support.helpers import Proc, remove_stack_data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ObservedStack:
    settings: Settings
    ports: dict[str, int]
    procs: dict[str, Proc]

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def scrape(self, service: str) -> str:
        with urllib.request.urlopen(self.url(service, "/metrics"), timeout=10) as response:
            return str(response.read().decode())


@contextmanager
def observed_stack(
    redis_url: str, database_url: str, data_dir: Path, prefix: str, extra_env: dict[str, str]
) -> Iterator[ObservedStack]:
    ns = f"{prefix}{uuid.uuid4().hex[:8]}"
    settings = Settings(
        redis_url=redis_url, database_url=database_url, namespace=ns, database_schema=f"t_{ns}", data_dir=data_dir
    )
    stack = Stack(settings, say=print)
    stack.redis_url, stack.database_url = redis_url, database_url
    env = {**stack.env(), **extra_env, "ALPHASAGA_HTTP_HOST": "127.0.0.1"}
    ports = {name: free_port() for name in SERVICES}
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    procs: dict[str, Proc] = {}
    try:
        for name in SERVICES:
            procs[name] = Proc.module(
                f"alphasaga_{name}",
                {**env, "ALPHASAGA_HTTP_PORT": str(ports[name])},
                data_dir / "logs" / f"{name}.log",
            )
        deadline = time.monotonic() + 180
        for name, proc in procs.items():
            while f"alphasaga-{name}: ready" not in proc.text():
                if proc.popen.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not start:\n{proc.text()[-3000:]}")
                time.sleep(0.1)
        yield ObservedStack(settings, ports, procs)
    finally:
        for proc in procs.values():  # all at once: each then stops within its own deadline
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.stop()
        asyncio.run(remove_stack_data(redis_url, database_url, ns, settings.database_schema))
