"""Starts the services (``alphasaga_contracts.steps.Service``) as separate processes
(``make run``, ``make up``), with embedded PostgreSQL and Valkey when no URLs are
configured outside production."""

from __future__ import annotations

import asyncio
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
from .principals import (
    SECRETS_DIR,
    DatabaseLogins,
    RedisLogins,
    database_role_names,
    password_files,
    redis_prefix,
    redis_user_names,
)

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
FRONT_END = "api"  # the login of the API and of the stack's own client calls
ADMIN = "admin"


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
    redis_logins: RedisLogins | None = None
    database_logins: DatabaseLogins | None = None
    _embedded: EmbeddedServers | None = None
    _made_logins: list[Callable[[], None]] = field(default_factory=list)
    _log_starts: dict[str, int] = field(default_factory=dict)
    _up_since: dict[str, float] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def resolve_servers(self) -> None:
        s = self.settings
        if s.production:  # a deployment's logins are its own (compose, k8s: docs/deployment.md)
            _, self.database_url = s.require_urls()
            self.redis_url = s.redis_url or ""
            return
        # On JetStream Redis carries nothing but the API's rate limits.
        need_redis = not s.redis_url and (not s.on_jetstream or "api" in self.services)
        need_pg = not s.database_url
        own = {"on": (True, True), "off": (False, False), "auto": (need_redis, need_pg)}[s.service_users]
        keys = s.data_dir / SECRETS_DIR
        if own[0]:
            self.redis_logins = RedisLogins(s.namespace, password_files(keys / "redis", redis_user_names(s.namespace)))
        if own[1]:
            self.database_logins = DatabaseLogins(
                s.database_schema, password_files(keys / "postgres", database_role_names())
            )
        acl = self._write_acl() if need_redis and self.redis_logins else None
        if need_redis or need_pg:
            self._embedded = start_embedded(s.data_dir, redis=need_redis, postgres=need_pg, say=self.say, redis_acl=acl)
        self.redis_url = s.redis_url or (self._embedded.redis_url if self._embedded else "") or ""
        self.database_url = s.database_url or (self._embedded.database_url if self._embedded else "") or ""
        self._make_logins(made_here=(need_redis, need_pg))

    def _write_acl(self) -> Path:
        """The embedded Valkey's users (``alphasaga acl render``), readable by this user alone."""
        from alphasaga_shared.acl import render

        assert self.redis_logins is not None
        ns = self.settings.namespace
        path = self.settings.data_dir / "valkey.acl"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render(ns, self.redis_logins.passwords, prefix=redis_prefix(ns), anonymous_ping=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def _make_logins(self, made_here: tuple[bool, bool]) -> None:
        """The services' logins: in the ACL file of an embedded Valkey already; on a server the
        URLs name, made now with the URL's login and removed when the stack stops. The
        PostgreSQL roles are made by the owner step (migrations, roles, logins) either way."""
        if self.redis_logins is not None:
            if made_here[0]:
                self.redis_url = self.redis_logins.url(self.redis_url, ADMIN)
            else:
                redis_logins, admin_url = self.redis_logins, self.redis_url
                self._made_logins.append(lambda: asyncio.run(redis_logins.remove(admin_url)))
                asyncio.run(redis_logins.create(admin_url))
            self.say(f"each service on a Redis user of its own ({redis_prefix(self.settings.namespace)}<service>)")
        if self.database_logins is not None:
            database_logins, owner_url = self.database_logins, self.database_url
            if not made_here[1]:
                self._made_logins.append(lambda: asyncio.run(database_logins.remove(owner_url)))
            asyncio.run(database_logins.create(owner_url))
            self.say(f"each service on a PostgreSQL role of its own ({database_logins.names()[FRONT_END]}…)")

    def login_urls(self, login: str) -> tuple[str, str]:
        """The Redis and PostgreSQL URLs that ``login`` (a service, or ``api``) connects with."""
        redis_url = self.redis_logins.url(self.redis_url, login) if self.redis_logins else self.redis_url
        database_url = self.database_logins.url(self.database_url, login) if self.database_logins else self.database_url
        return redis_url, database_url

    def front_end_settings(self) -> Settings:
        """Settings for the stack's own client calls (submit, follow, an API key): the front
        ends' login."""
        redis_url, database_url = self.login_urls(FRONT_END)
        return self.settings.model_copy(update={"redis_url": redis_url, "database_url": database_url})

    def env(self, login: str = FRONT_END) -> dict[str, str]:
        env = dict(os.environ)
        env["ALPHASAGA_REDIS_URL"], env["ALPHASAGA_DATABASE_URL"] = self.login_urls(login)
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
            [sys.executable, "-m", f"alphasaga_{name}"], env=self.env(name), stdout=log_file, stderr=log_file
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
        while self._made_logins:
            try:
                self._made_logins.pop()()
            except Exception as exc:  # said: the logins are left on the server
                self.say(f"removing the services' logins failed: {exc}")
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
