"""The composition root: settings, the client API, accounts, tokens and limits wired into
one FastAPI app, with its routes, error handlers, middleware and the MCP endpoint."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from alphasaga_client import AlphaSaga
from alphasaga_shared.config import Settings

from . import problems, routes_admin, routes_auth, routes_ops, routes_research, routes_stream
from .edge import BodyLimit, Edge
from .ratelimit import RateLimiter
from .runtime import Runtime, Tokens
from .settings import ApiSettings

TITLE = "AlphaSaga API"
VERSION = "1.0.0"
DESCRIPTION = """Automated trading-strategy research as sagas, over HTTP.

Authenticate with `Authorization: Bearer <token>`: an access token from `POST /v1/auth/login`,
or an API key (`ask_…`). Each operation states the role it needs in `x-role`
(public, viewer, researcher, admin). Errors are RFC 9457 `application/problem+json`."""


def create_app(
    settings: Settings | None = None,
    api: ApiSettings | None = None,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    with_mcp: bool = True,
) -> FastAPI:
    settings = settings or Settings()
    api = api or ApiSettings()
    signing_key = api.key(settings)  # production refuses to go on without one
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    mcp_app = None
    if with_mcp:
        from .mcp_server import http_app

        mcp_app = http_app()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = AlphaSaga(
            settings, application_name="alphasaga-api", pool_size=api.pool_size, redis_connections=api.redis_connections
        )
        try:
            await client.connect()
            accounts = await client.accounts(now)
            accounts.refresh_ttl = dt.timedelta(seconds=api.refresh_ttl_s)
            app.state.runtime = Runtime(
                client=client,
                accounts=accounts,
                limiter=RateLimiter(client.redis, settings.namespace, clock=lambda: now().timestamp()),
                tokens=Tokens(signing_key, dt.timedelta(seconds=api.access_ttl_s), now),
                api=api,
            )
            if mcp_app is not None:
                async with mcp_app.running():
                    yield
            else:
                yield
        finally:
            app.state.runtime = None
            await client.close()

    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION, lifespan=lifespan)
    app.state.runtime = None
    problems.install(app)
    for module in (routes_auth, routes_research, routes_stream, routes_admin, routes_ops):
        app.include_router(module.router)
    if mcp_app is not None:
        app.mount("/mcp", mcp_app.app)
    app.add_middleware(Edge)
    app.add_middleware(BodyLimit, limit=api.max_body_bytes)  # outermost: before anything reads
    _bearer_scheme(app)
    return app


def _bearer_scheme(app: FastAPI) -> None:
    """Declare the bearer scheme the operations' ``security`` refers to."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = original()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An access token or an API key"}
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
