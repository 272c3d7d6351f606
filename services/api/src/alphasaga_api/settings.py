"""The api service's own settings (``ALPHASAGA_API_*``); the servers, namespace and schema
come from the shared ``ALPHASAGA_*`` settings like every other service's."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from alphasaga_shared.config import ConfigError, Settings

MIN_SIGNING_KEY = 32


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ALPHASAGA_API_", extra="ignore")

    # Every address: the api's container is reached through its network. `alphasaga up`
    # sets 127.0.0.1 unless told otherwise.
    host: str = "0.0.0.0"
    port: int | None = Field(
        None, ge=0, le=65535, description="Unset: ALPHASAGA_HTTP_PORT (the port every service's probes use), else 8080"
    )
    signing_key: SecretStr | None = Field(None, description="HS256 key of access tokens; required in production")
    access_ttl_s: int = Field(300, ge=10, le=3600)
    refresh_ttl_s: int = Field(14 * 24 * 3600, ge=60)
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Larger request bodies get 413")
    # Requests per minute: logins per client address, submits per caller and per address.
    login_per_minute: int = Field(10, ge=1)
    submit_per_minute: int = Field(120, ge=1)
    submit_ip_per_minute: int = Field(600, ge=1)
    rate_limit_store: Literal["redis", "postgres"] | None = Field(
        None,
        description="Where the rate-limit counters are kept; unset: Redis on Redis Streams, PostgreSQL on "
        "JetStream (which then needs no Redis)",
    )
    pool_size: int = Field(16, ge=1, le=200, description="PostgreSQL connections per process")
    redis_connections: int = Field(
        1000, ge=10, description="Redis connections per process; each open SSE stream holds one"
    )
    # An SSE stream ends after this long without the saga ending; a client resumes it.
    stream_timeout_s: float = Field(600.0, gt=0)
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of the reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; empty: none, the caller's address is the connection's",
    )

    def proxy_headers(self) -> dict[str, Any]:
        """uvicorn's settings for forwarded headers: off unless proxies are named."""
        proxies = [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]
        return {"proxy_headers": bool(proxies), "forwarded_allow_ips": proxies}

    def listen_port(self, settings: Settings) -> int:
        if self.port is not None:
            return self.port
        return settings.http_port if settings.http_port is not None else 8080

    def limit_store(self, settings: Settings) -> Literal["redis", "postgres"]:
        """Where the rate-limit counters go, or a one-line ConfigError when that is Redis and
        no Redis is named: never PostgreSQL instead, unasked (docs/decisions/0026)."""
        store = self.rate_limit_store or ("postgres" if settings.on_jetstream else "redis")
        if store == "redis" and not settings.redis_url:
            why = "ALPHASAGA_API_RATE_LIMIT_STORE=redis" if self.rate_limit_store else "the transport is Redis Streams"
            raise ConfigError(f"ALPHASAGA_REDIS_URL is not set: the API's rate limits are kept in Redis ({why})")
        return store

    def key(self, settings: Settings) -> str:
        """The signing key, or a one-line ConfigError where production has none that will do."""
        key = self.signing_key.get_secret_value() if self.signing_key else None
        if settings.production:
            if not key:
                raise ConfigError("ALPHASAGA_API_SIGNING_KEY is not set (required when ALPHASAGA_ENV=production)")
            if len(key) < MIN_SIGNING_KEY:
                raise ConfigError(
                    f"ALPHASAGA_API_SIGNING_KEY must be a secret of at least {MIN_SIGNING_KEY} characters"
                )
            return key
        if key:
            return key
        # No key in the source: without one, this process makes its own, and its tokens end
        # with it (`alphasaga up` keeps one per data directory instead).
        return secrets.token_urlsafe(48)
