"""Settings, all from ``ALPHASAGA_*`` environment variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alphasaga_contracts import Streams

# URL schemes of the transports (``Settings.broker_url``).
JETSTREAM_SCHEMES = ("nats", "tls")
REDIS_SCHEMES = ("redis", "rediss", "unix")
ENV_PREFIX = "alphasaga_"


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message says which, in one line."""


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def environment(names: Any, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ``ALPHASAGA_<NAME>`` variables (any case) of the environment for these names."""
    found = {k.lower(): v for k, v in (os.environ if environ is None else environ).items()}
    return {name: found[ENV_PREFIX + name] for name in names if ENV_PREFIX + name in found}


class Settings(BaseModel):
    """Values given here, else the environment's ``ALPHASAGA_*`` variables (any case), else
    the defaults below. A plain model that reads the environment itself, as pydantic-settings
    would for these flat fields: that library cost every command-line call a tenth of a
    second to import (docs/decisions/0027)."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _under_environment(cls, values: Any) -> Any:
        return {**environment(cls.model_fields), **values} if isinstance(values, dict) else values

    env: Literal["development", "production"] = "development"
    redis_url: str | None = None
    # The transport: ``nats://`` selects JetStream (bus/jetstream.py); unset, or
    # ``redis://``, Redis Streams at ``redis_url`` (docs/decisions/0021).
    broker_url: str | None = None
    nats_replicas: int = Field(1, ge=1, le=5, description="JetStream streams' replicas (3 on a cluster)")
    nats_duplicate_window_s: float = Field(
        120.0, gt=0, description="How long JetStream drops a publish whose Nats-Msg-Id it has seen"
    )
    database_url: str | None = None
    database_schema: str = Field("alphasaga", pattern=r"^[a-z_][a-z0-9_]*$")
    namespace: str = "alphasaga"
    data_dir: Path = Path(".alphasaga")
    service_users: Literal["auto", "on", "off"] = Field(
        "auto",
        description="The local stack (make run/up): each service on a Redis user and PostgreSQL role of its own."
        " auto: on the embedded servers only; on: also on the servers the URLs name (made for the run, removed"
        " after); off: every service logs in as the URLs say",
    )
    consumer: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    # Bus tuning (DESIGN.md §2): reads are batched, failed entries are reclaimed after
    # an idle time and dead-lettered after a delivery cap. A live consumer refreshes the
    # entries it works on every third of the idle time, so only a dead one's go idle:
    # the idle time is a few heartbeats, not a guess at the longest handler.
    max_records: int = Field(100, ge=1, le=10_000)
    block_ms: int = Field(1000, ge=1)
    reclaim_idle_ms: int = Field(1_500, ge=10)
    reclaim_interval_ms: int = Field(250, ge=10)
    delivery_cap: int = Field(5, ge=1)
    max_entry_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest stream entry accepted or published; larger ones are dead-lettered"
    )
    max_error_chars: int = Field(2000, ge=100, description="Error texts in dead letters and replies are cut to this")
    dead_consumer_idle_ms: int = Field(600_000, ge=1000)
    idempotency_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    group_recovery_s: float = Field(
        30.0, gt=0, description="A consumer group Redis forgot and not made again within this: not live, exit"
    )

    # Orchestrator settings are the orchestrator's (``alphasaga_orchestrator.settings``), the
    # relay's in ``outbox.RelaySettings``: a worker loads none of them. The projector's are
    # read by the orchestrator and by the projector running alone.
    # Large batches under load: a saga's events then fall in fewer batches, so it is folded
    # and upserted fewer times (docs/decisions/0008).
    projection_batch: int = Field(5000, ge=1, description="Events the projector reads per pass")
    projection_poll_ms: int = Field(200, ge=1)
    projection_cache_size: int = Field(
        5_000, ge=0, description="Sagas in flight the projector keeps folded (finished ones never); 0 = none"
    )

    # Retention (docs/decisions/0018): a finished saga's events stay in the hot table this many
    # days after it ended; then `alphasaga archive run` moves them to the archive. Unset: all
    # stay hot, and nothing is due.
    retention_hot_days: float | None = Field(
        None, gt=0, description="Days a finished saga's events stay hot before they are due for the archive"
    )
    archive_batch: int = Field(200, ge=1, le=10_000, description="Sagas moved to the archive per transaction")

    connect_timeout_s: float = Field(5.0, gt=0)
    wait_for_servers_s: float = Field(
        0.0,
        ge=0,
        description="At start, wait this long for an unreachable Redis or PostgreSQL (not ready meanwhile);"
        " 0: fail at once",
    )
    outage_exit_s: float = Field(
        900.0,
        gt=0,
        description="An outage of Redis or PostgreSQL waited out longer than this fails liveness, and the service"
        " exits with one line for its supervisor to restart it",
    )
    stop_timeout_s: float = Field(5.0, gt=0, description="How long each part of a graceful stop may take")
    start_timeout_s: float = Field(
        120.0, gt=0, description="How long the local stack waits for services that make no progress starting"
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio",
        description="The services' event loop: asyncio's own, or uvloop's (libuv); make bench levers measures both",
    )
    http_port: int | None = Field(None, description="Health and metrics; unset = no HTTP server")
    http_host: str = "0.0.0.0"
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP collector (Jaeger's :4318); unset = no tracing")
    trace_sample_ratio: float = Field(
        1.0, ge=0, le=1, description="Share of sagas traced (parent-based: a saga is traced whole or not at all)"
    )
    log_level: str = "INFO"

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def streams(self) -> Streams:
        return Streams(self.namespace)

    @property
    def bus_url(self) -> str | None:
        """The transport's URL: ``broker_url``, else Redis's."""
        return self.broker_url or self.redis_url

    @property
    def on_jetstream(self) -> bool:
        return bool(self.broker_url) and self.broker_url.partition("://")[0] in JETSTREAM_SCHEMES  # type: ignore[union-attr]

    def require_urls(self) -> tuple[str, str]:
        """The transport's and the database's URLs, or a one-line ConfigError naming what
        is missing."""
        missing = [
            name
            for name, value in (
                ("ALPHASAGA_REDIS_URL (or ALPHASAGA_BROKER_URL)", self.bus_url),
                ("ALPHASAGA_DATABASE_URL", self.database_url),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} not set (required when ALPHASAGA_ENV=production)")
        assert self.bus_url and self.database_url
        return self.bus_url, self.database_url
