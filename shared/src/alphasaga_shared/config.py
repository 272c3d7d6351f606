"""Settings, all from ``ALPHASAGA_*`` environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec
from msgspec import Meta

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


@dataclass(frozen=True)
class SettingField:
    """A setting's default (``Settings.model_fields``, named as the other settings classes'
    pydantic-settings fields are, so that code and tests read any settings class alike)."""

    default: Any


class InvalidSetting(ConfigError):
    """A value given or in the environment that its setting refuses; the message names the
    variable, what is wrong and the value."""

    def __init__(self, name: str, reason: str, value: Any) -> None:
        self.name, self.reason, self.value = name, reason, value
        super().__init__(f"invalid setting {name}: {reason} (got {value!r})")

    @classmethod
    def of(cls, exc: msgspec.ValidationError, values: dict[str, Any]) -> InvalidSetting:
        reason, _, where = str(exc).rpartition(" - at `$.")
        field = where.rstrip("`").split(".")[0].split("[")[0]
        return cls(ENV_PREFIX.upper() + field.upper(), reason or str(exc), values.get(field))


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str | os.PathLike):
        return Path(value)
    raise NotImplementedError


class _ReadsTheEnvironment(msgspec.StructMeta):
    """``Settings(**values)``: the values given, then the environment's, then the defaults,
    validated and converted from text as a setting's type says (msgspec, not strict)."""

    def __call__(cls, **values: Any) -> Any:
        merged = {**environment(cls.model_fields), **values}  # type: ignore[attr-defined]
        try:
            return msgspec.convert(merged, cls, strict=False, dec_hook=_decode)
        except msgspec.ValidationError as exc:
            raise InvalidSetting.of(exc, merged) from None


class Settings(msgspec.Struct, kw_only=True, metaclass=_ReadsTheEnvironment):
    """Values given here, else the environment's ``ALPHASAGA_*`` variables (any case), else
    the defaults below; a wrong one is an ``InvalidSetting`` naming its variable. A msgspec
    struct that reads the environment itself: pydantic and pydantic-settings cost every
    command-line call a tenth of a second to import and build (docs/decisions/0027)."""

    model_fields: ClassVar[dict[str, SettingField]]

    env: Literal["development", "production"] = "development"
    redis_url: str | None = None
    # The transport: ``nats://`` selects JetStream (bus/jetstream.py); unset, or
    # ``redis://``, Redis Streams at ``redis_url`` (docs/decisions/0021).
    broker_url: str | None = None
    nats_replicas: Annotated[int, Meta(ge=1, le=5, description="JetStream streams' replicas (3 on a cluster)")] = 1
    nats_duplicate_window_s: Annotated[
        float, Meta(gt=0, description="How long JetStream drops a publish whose Nats-Msg-Id it has seen")
    ] = 120.0
    database_url: str | None = None
    database_schema: Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_]*$")] = "alphasaga"
    namespace: str = "alphasaga"
    data_dir: Path = Path(".alphasaga")
    service_users: Annotated[
        Literal["auto", "on", "off"],
        Meta(
            description="The local stack (make run/up): each service on a Redis user and PostgreSQL role of its own."
            " auto: on the embedded servers only; on: also on the servers the URLs name (made for the run, removed"
            " after); off: every service logs in as the URLs say"
        ),
    ] = "auto"
    consumer: str = msgspec.field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    # Bus tuning (DESIGN.md §2): reads are batched, failed entries are reclaimed after
    # an idle time and dead-lettered after a delivery cap. A live consumer refreshes the
    # entries it works on every third of the idle time, so only a dead one's go idle:
    # the idle time is a few heartbeats, not a guess at the longest handler.
    max_records: Annotated[int, Meta(ge=1, le=10_000)] = 100
    block_ms: Annotated[int, Meta(ge=1)] = 1000
    reclaim_idle_ms: Annotated[int, Meta(ge=10)] = 1_500
    reclaim_interval_ms: Annotated[int, Meta(ge=10)] = 250
    delivery_cap: Annotated[int, Meta(ge=1)] = 5
    max_entry_bytes: Annotated[
        int, Meta(ge=1024, description="Largest stream entry accepted or published; larger ones are dead-lettered")
    ] = 256 * 1024
    max_error_chars: Annotated[
        int, Meta(ge=100, description="Error texts in dead letters and replies are cut to this")
    ] = 2000
    dead_consumer_idle_ms: Annotated[int, Meta(ge=1000)] = 600_000
    idempotency_ttl_s: Annotated[int, Meta(ge=60)] = 7 * 24 * 3600
    group_recovery_s: Annotated[
        float, Meta(gt=0, description="A consumer group Redis forgot and not made again within this: not live, exit")
    ] = 30.0

    # Orchestrator settings are the orchestrator's (``alphasaga_orchestrator.settings``), the
    # relay's in ``outbox.RelaySettings``: a worker loads none of them. The projector's are
    # read by the orchestrator and by the projector running alone.
    # Large batches under load: a saga's events then fall in fewer batches, so it is folded
    # and upserted fewer times (docs/decisions/0008).
    projection_batch: Annotated[int, Meta(ge=1, description="Events the projector reads per pass")] = 5000
    projection_poll_ms: Annotated[int, Meta(ge=1)] = 200
    projection_cache_size: Annotated[
        int, Meta(ge=0, description="Sagas in flight the projector keeps folded (finished ones never); 0 = none")
    ] = 5_000

    # Retention (docs/decisions/0018): a finished saga's events stay in the hot table this many
    # days after it ended; then `alphasaga archive run` moves them to the archive. Unset: all
    # stay hot, and nothing is due.
    retention_hot_days: (
        Annotated[float, Meta(gt=0, description="Days a finished saga's events stay hot, then due for the archive")]
        | None
    ) = None
    archive_batch: Annotated[int, Meta(ge=1, le=10_000, description="Sagas moved to the archive per transaction")] = 200

    connect_timeout_s: Annotated[float, Meta(gt=0)] = 5.0
    wait_for_servers_s: Annotated[
        float,
        Meta(
            ge=0,
            description="At start, wait this long for an unreachable Redis or PostgreSQL (not ready meanwhile);"
            " 0: fail at once",
        ),
    ] = 0.0
    outage_exit_s: Annotated[
        float,
        Meta(
            gt=0,
            description="An outage of Redis or PostgreSQL waited out longer than this fails liveness, and the service"
            " exits with one line for its supervisor to restart it",
        ),
    ] = 900.0
    stop_timeout_s: Annotated[float, Meta(gt=0, description="How long each part of a graceful stop may take")] = 5.0
    start_timeout_s: Annotated[
        float, Meta(gt=0, description="How long the local stack waits for services that make no progress starting")
    ] = 120.0
    event_loop: Annotated[
        Literal["asyncio", "uvloop"],
        Meta(
            description="The services' event loop: asyncio's own, or uvloop's (libuv); make bench levers measures both"
        ),
    ] = "asyncio"
    http_port: Annotated[int | None, Meta(description="Health and metrics; unset = no HTTP server")] = None
    http_host: str = "0.0.0.0"
    otlp_endpoint: Annotated[
        str | None, Meta(description="OTLP/HTTP collector (Jaeger's :4318); unset = no tracing")
    ] = None
    trace_sample_ratio: Annotated[
        float,
        Meta(ge=0, le=1, description="Share of sagas traced (parent-based: a saga is traced whole or not at all)"),
    ] = 1.0
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

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Settings:
        """A copy with ``update`` applied, not validated again (as pydantic's ``model_copy``,
        whose name the other settings classes use)."""
        return msgspec.structs.replace(self, **(update or {}))


Settings.model_fields = {
    f.name: SettingField(f.default_factory() if f.default is msgspec.NODEFAULT else f.default)
    for f in msgspec.structs.fields(Settings)
}
