"""The MCP server: AlphaSaga's research as tools for an agent, on the official ``mcp`` SDK.
In the api service it answers over streamable HTTP at ``/mcp/``, to an API key; ``alphasaga
mcp`` serves the same tools over stdio to a local agent, as the local operator.

The tools are plain functions over the use cases (``mcp_tools``); the request's schema is
the contract model's. Here: the server, and how a tool finds its caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from alphasaga_accounts import AuthFailed
from alphasaga_client import AlphaSaga
from alphasaga_client.usecases import LOCAL, Caller

from .edge import HttpMiddleware
from .mcp_tools import RESOURCES, TOOLS, Resolve, ToolServer

INSTRUCTIONS = """AlphaSaga researches trading strategies on daily prices. submit_research starts a
saga (reasoning, code generation, ML, backtest) and returns its id; wait_for_saga or get_saga
follows it; its report and chart are resources saga://{id}/report and saga://{id}/chart."""


def build(resolve: Resolve) -> FastMCP:
    mcp = ToolServer(
        resolve,
        name="alphasaga",
        instructions=INSTRUCTIONS,
        streamable_http_path="/",
        stateless_http=True,  # any replica answers any call: no session affinity needed
        json_response=True,
        # Callers present an API key, never a cookie: there is no ambient credential for
        # DNS rebinding to borrow, and the service is reached by whatever name routes to it.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    for tool in TOOLS:
        mcp.tool()(tool)
    for uri, mime_type, read in RESOURCES:
        mcp.resource(uri, mime_type=mime_type)(read)
    return mcp


# --- over HTTP, inside the api service ---


async def _from_request(ctx: Context[Any, Any, Any]) -> Caller:
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state") or {}
    found = state.get("mcp_caller")
    if not isinstance(found, Caller):
        raise ToolError("not authenticated")
    return found


class _KeyAuth(HttpMiddleware):
    """Admits only a request with a valid API key (or access token) of a viewer or more,
    and hands the tools the api's client and the caller."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import Request

        from .problems import problem
        from .security import authenticate

        request = Request(scope, receive)
        runtime = scope["app"].state.runtime
        try:
            principal = await authenticate(request)
        except AuthFailed as exc:
            response = problem(request, 401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        scope["state"]["mcp_caller"] = Caller(principal, runtime.client, runtime.accounts)
        await self.app(scope, receive, send)


@dataclass
class HttpMcp:
    server: FastMCP
    app: ASGIApp

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.server.session_manager.run():
            yield


def http_app() -> HttpMcp:
    server = build(_from_request)
    server.streamable_http_app()  # creates the session manager that ``running`` starts
    from mcp.server.fastmcp.server import StreamableHTTPASGIApp

    return HttpMcp(server, _KeyAuth(StreamableHTTPASGIApp(server.session_manager)))


# --- over stdio, for a local agent ---


def serve_stdio() -> None:
    """Serve the tools on stdin/stdout with the settings of the environment, as the local
    operator (whoever can run this can reach the servers directly anyway)."""
    client = AlphaSaga(application_name="alphasaga-mcp")

    async def local(_: Context[Any, Any, Any]) -> Caller:
        return Caller(LOCAL, client, await client.accounts())

    build(local).run("stdio")
