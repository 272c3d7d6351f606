"""Starts the five services as separate processes (``make run``, ``make up``), with
embedded PostgreSQL and Valkey when no URLs are configured outside production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alphasaga_shared.config import Settings

from .embedded import EmbeddedServers, start_embedded
from .errors import CliError

SERVICES = ("orchestrator", "reasoning", "codegen", "ml", "backtest")


class StackError(CliError):
    """The local stack did not start."""


@dataclass
class Stack:
    settings: Settings
    say: Callable[[str], None] = print
    services: tuple[str, ...] = SERVICES
    redis_url: str = ""
    database_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _embedded: EmbeddedServers | None = None

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def resolve_servers(self) -> None:
        s = self.settings
        if s.production:
            self.redis_url, self.database_url = s.require_urls()
            return
        need_redis, need_pg = not s.redis_url, not s.database_url
        if need_redis or need_pg:
            self._embedded = start_embedded(s.data_dir, redis=need_redis, postgres=need_pg, say=self.say)
        self.redis_url = s.redis_url or (self._embedded.redis_url if self._embedded else "") or ""
        self.database_url = s.database_url or (self._embedded.database_url if self._embedded else "") or ""

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ALPHASAGA_REDIS_URL"] = self.redis_url
        env["ALPHASAGA_DATABASE_URL"] = self.database_url
        env["ALPHASAGA_NAMESPACE"] = self.settings.namespace
        env["ALPHASAGA_DATABASE_SCHEMA"] = self.settings.database_schema
        env.pop("ALPHASAGA_CONSUMER", None)  # each process names itself <host>-<pid>
        return env

    def start(self, timeout: float = 60.0) -> None:
        self.resolve_servers()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.env()
        for name in self.services:
            log_file = (self.log_dir / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"alphasaga_{name}"], env=env, stdout=log_file, stderr=log_file
            )
        self._wait_ready(timeout)
        self.say(f"services running: {', '.join(self.services)} (logs in {self.log_dir})")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(self.services)
        while waiting:
            for name in list(waiting):
                proc = self.processes[name]
                text = (self.log_dir / f"{name}.log").read_text(errors="replace")
                if proc.poll() is not None:
                    tail = "\n".join(text.strip().splitlines()[-5:])
                    raise StackError(f"{name} exited with code {proc.returncode}:\n{tail}")
                if f"alphasaga-{name}: ready" in text:
                    waiting.discard(name)
            if time.monotonic() > deadline:
                raise StackError(f"not ready after {timeout:.0f}s: {', '.join(sorted(waiting))}")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
