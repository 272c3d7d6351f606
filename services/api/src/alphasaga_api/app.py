"""The composition root: settings, the client API, accounts, tokens and limits wired into
one FastAPI app, with its routes, error handlers, middleware and the MCP endpoint."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI

from alphasaga_client import AlphaSaga
from alphasaga_shared.config import Settings

from . import (
    explorer,
    models,
    problems,
    routes_admin,
    routes_auth,
    routes_campaigns,
    routes_ops,
    routes_research,
    routes_stream,
)
from .edge import BodyLimit, Edge, LastWord, NotModified
from .ratelimit import Counters, RateLimiter, RedisCounters
from .runtime import Runtime, Tokens
from .settings import ApiSettings
from .storable import storable_input

if TYPE_CHECKING:
    from .mcp_server import HttpMcp

TITLE = "AlphaSaga API"
VERSION = "1.0.0"
DESCRIPTION = """Automated trading-strategy research as sagas, over HTTP.

Authenticate with `Authorization: Bearer <token>`: an access token from `POST /v1/auth/login`,
or an API key (`ask_…`). Each operation states the role it needs in `x-role`
(public, viewer, researcher, admin). Errors are RFC 9457 `application/problem+json`."""
PROBLEM = {"content": {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
# Every operation may answer with a problem: a client error, or the API or a server unavailable.
PROBLEMS: dict[int | str, dict[str, object]] = {
    "4XX": {"description": "A problem with the request (RFC 9457)", **PROBLEM},
    "5XX": {"description": "A problem on the server's side (RFC 9457)", **PROBLEM},
}


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

    lifespan = _lifespan(settings, api, Tokens(signing_key, dt.timedelta(seconds=api.access_ttl_s), now), now, mcp_app)
    app = FastAPI(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=PROBLEMS,
        dependencies=[Depends(storable_input)],  # before every route's own parameters
    )
    app.state.runtime = None
    problems.install(app)
    for module in (routes_auth, routes_research, routes_campaigns, routes_stream, routes_admin, routes_ops):
        app.include_router(module.router)
    explorer.install(app)
    if mcp_app is not None:
        app.mount("/mcp", mcp_app.app)
    # Each added one wraps the ones before: LastWord is the outermost, NotModified the innermost.
    app.add_middleware(NotModified)
    app.add_middleware(Edge)
    app.add_middleware(BodyLimit, limit=api.max_body_bytes)  # before anything reads
    app.add_middleware(LastWord)
    _document(app)
    return app


def _lifespan(
    settings: Settings,
    api: ApiSettings,
    tokens: Tokens,
    now: Callable[[], dt.datetime],
    mcp_app: HttpMcp | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Connect the client and build the runtime the routes share; close them at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = AlphaSaga(
            settings, application_name="alphasaga-api", pool_size=api.pool_size, redis_connections=api.redis_connections
        )
        try:
            await client.connect()
            accounts = await client.accounts(now)
            accounts.refresh_ttl = dt.timedelta(seconds=api.refresh_ttl_s)
            counters: Counters
            if api.limit_store(settings) == "postgres":
                from alphasaga_accounts.ratelimits import PostgresCounters

                counters = PostgresCounters((await client.event_store()).pool)  # its table: accounts' migrations
            else:
                counters = RedisCounters(client.redis, settings.namespace)
            app.state.runtime = Runtime(
                client=client,
                accounts=accounts,
                limiter=RateLimiter(counters, clock=lambda: now().timestamp()),
                tokens=tokens,
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

    return lifespan


def _document(app: FastAPI) -> None:
    """Declare the bearer scheme the operations' ``security`` refers to, and the problem
    every error answer is."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An access token or an API key"}
            }
            problem = models.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.setdefault("schemas", {}).update({**problem.pop("$defs"), "Problem": problem})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
