"""Starts the services (``alphasaga_contracts.steps.Service``) as separate processes
(``make run``, ``make up``), with embedded PostgreSQL and Valkey when no URLs are
configured outside production."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alphasaga_contracts import Service
from alphasaga_shared.config import Settings

from .embedded import EmbeddedServers, start_embedded
from .errors import CliError

SERVICES = tuple(s.value for s in Service)
# `alphasaga up` also starts the HTTP API (tests start it only where they use it).
WITH_API = (*SERVICES, "api")
# While services start: a line every so often saying which are still starting.
REPORT_EVERY_S = 5.0
# A service that exits under `alphasaga up` is started again after a backoff that doubles
# up to a limit, and starts over once it has stayed up a while.
SUPERVISE_EVERY_S = 0.5
RESTART_BACKOFF_S = 1.0
RESTART_BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
# The api of a local stack answers this machine alone unless ALPHASAGA_API_HOST says otherwise.
API_HOST = "127.0.0.1"
SIGNING_KEY_FILE = "api-signing-key"


class StackError(CliError):
    """The local stack did not start."""


def signing_key(data_dir: Path) -> str:
    """The api's signing key of this data directory: random, made by the first start and
    kept beside the data (readable by its owner alone), so that tokens outlive a restart
    and no two data directories share one. Production names its own key."""
    path = data_dir / SIGNING_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another start made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


@dataclass
class Stack:
    settings: Settings
    say: Callable[[str], None] = print
    services: tuple[str, ...] = SERVICES
    redis_url: str = ""
    database_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    _embedded: EmbeddedServers | None = None
    _log_starts: dict[str, int] = field(default_factory=dict)
    _up_since: dict[str, float] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def resolve_servers(self) -> None:
        s = self.settings
        if s.production:
            _, self.database_url = s.require_urls()
            self.redis_url = s.redis_url or ""
            return
        # On JetStream Redis carries nothing but the API's rate limits.
        need_redis = not s.redis_url and (not s.on_jetstream or "api" in self.services)
        need_pg = not s.database_url
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
        env["ALPHASAGA_DATA_DIR"] = str(self.settings.data_dir.resolve())  # users' files are read from here
        env.pop("ALPHASAGA_CONSUMER", None)  # each process names itself <host>-<pid>
        if "api" in self.services:
            env.setdefault("ALPHASAGA_API_HOST", API_HOST)
            if not env.get("ALPHASAGA_API_SIGNING_KEY") and not self.settings.production:
                env["ALPHASAGA_API_SIGNING_KEY"] = signing_key(self.settings.data_dir)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float | None = None) -> None:
        """Start every service and wait until each says it is ready. ``timeout``
        (``ALPHASAGA_START_TIMEOUT_S``) is how long to wait without any service becoming
        ready: on a loaded machine the wait goes on while they make progress."""
        self.resolve_servers()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.services:
            self._spawn(name)
        self._wait_ready(self.settings.start_timeout_s if timeout is None else timeout)
        self.say(f"services running: {', '.join(self.services)} (logs in {self.log_dir})")

    def _spawn(self, name: str) -> None:
        log_file = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"alphasaga_{name}"], env=self.env(), stdout=log_file, stderr=log_file
        )
        self._log_starts[name] = (self.log_dir / f"{name}.log").stat().st_size

    def _log_since_start(self, name: str) -> str:
        with (self.log_dir / f"{name}.log").open("rb") as f:
            f.seek(self._log_starts.get(name, 0))
            return f.read().decode(errors="replace")

    def _wait_ready(self, timeout: float) -> None:
        started = last_progress = last_report = time.monotonic()
        waiting = set(self.services)
        while waiting:
            for name in sorted(waiting):
                proc = self.processes[name]
                text = self._log_since_start(name)
                if proc.poll() is not None:
                    tail = "\n".join(text.strip().splitlines()[-5:])
                    raise StackError(f"{name} exited with code {proc.returncode}:\n{tail}")
                if f"alphasaga-{name}: ready" in text:
                    waiting.discard(name)
                    last_progress = time.monotonic()
            now = time.monotonic()
            if waiting and now - last_report >= REPORT_EVERY_S:
                self.say(f"still starting ({now - started:.0f} s): {', '.join(sorted(waiting))}")
                last_report = now
            if waiting and now - last_progress > timeout:
                raise StackError(
                    f"not ready after {now - started:.0f} s, none of them for the last {timeout:.0f} s:"
                    f" {', '.join(sorted(waiting))} (ALPHASAGA_START_TIMEOUT_S sets how long to wait)"
                )
            time.sleep(0.1)

    def supervise(self, stop_signals: set[signal.Signals]) -> signal.Signals:
        """Keep the services running until one of ``stop_signals`` arrives (they must be
        blocked): a service that exits is started again after a backoff, and the user is
        told. Returns the signal received."""
        restarts: dict[str, int] = {}
        due: dict[str, float] = {}
        while True:
            received = signal.sigtimedwait(stop_signals, SUPERVISE_EVERY_S)
            if received is not None:
                return signal.Signals(received.si_signo)
            if self._embedded is not None:
                self._embedded.revive(self.say)
            now = time.monotonic()
            for name, proc in self.processes.items():
                if proc.poll() is None:
                    if now - self._up_since.get(name, now) > STABLE_AFTER_S:
                        restarts.pop(name, None)  # up for a while: the next exit starts over
                    continue
                if name not in due:
                    count = restarts[name] = restarts.get(name, 0) + 1
                    delay = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (count - 1))
                    due[name] = now + delay
                    self.say(f"{name} exited with code {proc.returncode}; restarting in {delay:.0f} s (#{count})")
                elif now >= due[name]:
                    del due[name]
                    self._spawn(name)
                    self._up_since[name] = now
                    self.say(f"{name} restarted (logs in {self.log_dir / (name + '.log')})")

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
