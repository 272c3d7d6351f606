"""The MCP server: AlphaSaga's research as tools for an agent, on the official ``mcp`` SDK.
In the api service it answers over streamable HTTP at ``/mcp/``, to an API key; ``alphasaga
mcp`` serves the same tools over stdio to a local agent, as the local operator.

Every tool calls the client API; the request's schema is the contract model's."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from alphasaga_client import AlphaSaga, ClientError, NotFound, SagaFilter
from alphasaga_client.accounts import AuthFailed, Principal, Role
from alphasaga_client.accounts.service import Accounts
from alphasaga_contracts import SagaState
from alphasaga_contracts.research import ResearchRequest

from .edge import HttpMiddleware
from .security import data_path_refusal, idempotent_message_id

INSTRUCTIONS = """AlphaSaga researches trading strategies on daily prices. submit_research starts a
saga (reasoning, code generation, ML, backtest) and returns its id; wait_for_saga or get_saga
follows it; its report and chart are resources saga://{id}/report and saga://{id}/chart."""
LOCAL = Principal("local:operator", "admin")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Caller:
    client: AlphaSaga
    principal: Principal
    accounts: Accounts | None = None


# How a tool finds its client and caller: from the HTTP request, or the stdio process's own.
Resolve = Callable[[Context[Any, Any, Any]], Awaitable[Caller]]


def build(resolve: Resolve) -> FastMCP:
    mcp = FastMCP(
        "alphasaga",
        instructions=INSTRUCTIONS,
        streamable_http_path="/",
        stateless_http=True,  # any replica answers any call: no session affinity needed
        json_response=True,
        # Callers present an API key, never a cookie: there is no ambient credential for
        # DNS rebinding to borrow, and the service is reached by whatever name routes to it.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    async def caller(ctx: Context[Any, Any, Any], needed: Role) -> Caller:
        found = await resolve(ctx)
        if not found.principal.may(needed):
            raise ToolError(f"this tool needs the {needed} role; the key has {found.principal.role}")
        return found

    @mcp.tool()
    async def submit_research(
        request: ResearchRequest, ctx: Context[Any, Any, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Start a research saga on a dataset (see list_datasets) and return its id. The same
        idempotency_key always names the same saga."""
        c = await caller(ctx, "researcher")
        if (refusal := data_path_refusal(c.principal, request)) is not None:
            raise ToolError(refusal)
        message_id = idempotent_message_id(c.principal, idempotency_key) if idempotency_key else None
        submitted = await _call(c.client.submit(request, message_id=message_id))
        if c.accounts is not None:
            await c.accounts.own(submitted.saga_id, c.principal)
        return {"saga_id": str(submitted.saga_id), "state": "submitted"}

    @mcp.tool()
    async def get_saga(saga_id: str, ctx: Context[Any, Any, Any]) -> dict[str, Any]:
        """A saga's state, steps with attempts and durations, verdict and metrics."""
        c = await caller(ctx, "viewer")
        detail = await _call(c.client.detail(saga_id))
        return {
            **detail.summary.as_json(with_state=False),
            "steps": [a.as_json() for a in detail.attempts],
            "trace_id": detail.trace_id,
        }

    @mcp.tool()
    async def wait_for_saga(saga_id: str, ctx: Context[Any, Any, Any], timeout_s: float = 300) -> dict[str, Any]:
        """Wait until the saga ends (or timeout_s passes) and return its state and verdict."""
        c = await caller(ctx, "viewer")
        deadline = asyncio.get_running_loop().time() + min(max(timeout_s, 1), 1800)
        while True:
            try:
                summary = await c.client.status(saga_id)
            except NotFound:
                # Just submitted: the orchestrator records it within moments.
                if len(saga_id) != 36 or asyncio.get_running_loop().time() > deadline:
                    raise ToolError(f"no saga {saga_id}") from None
                await asyncio.sleep(0.2)
                continue
            except ClientError as exc:
                raise ToolError(str(exc)) from None
            if SagaState(summary.state).terminal:
                return summary.as_json(with_state=False)
            if asyncio.get_running_loop().time() > deadline:
                return {**summary.as_json(with_state=False), "note": "still running: call again"}
            await asyncio.sleep(0.5)

    @mcp.tool()
    async def list_sagas(
        ctx: Context[Any, Any, Any],
        state: Literal["RUNNING", "COMPENSATING", "COMPLETED", "ROLLED_BACK", "COMPENSATION_FAILED"] | None = None,
        dataset: str | None = None,
        verdict: Literal["accepted", "rejected"] | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Sagas, newest first."""
        c = await caller(ctx, "viewer")
        where = SagaFilter(
            state=state,
            dataset=dataset,
            accepted=None if verdict is None else verdict == "accepted",
            limit=min(max(limit, 1), 200),
        )
        return [s.as_json(with_state=False) for s in await _call(c.client.sagas(where))]

    @mcp.tool()
    async def replay_saga(saga_id: str, version: int, ctx: Context[Any, Any, Any]) -> dict[str, Any]:
        """Time travel: the saga's state after its event number `version`, and what that event changed."""
        c = await caller(ctx, "viewer")
        if version < 1:
            raise ToolError("version counts events from 1")
        replay = await _call(c.client.replay(saga_id, to=version))
        if not replay.frames or version > replay.total_events:
            raise ToolError(f"the saga has {replay.total_events} events")
        frame = replay.frames[-1]
        return {"version": frame.number, "event": frame.event, "state": frame.state,
                "changes": [ch.as_json() for ch in frame.changes]}  # fmt: skip

    @mcp.tool()
    async def get_artifact(sha256: str, ctx: Context[Any, Any, Any]) -> dict[str, Any]:
        """An artifact by its SHA-256: text as text, anything else base64."""
        c = await caller(ctx, "viewer")
        content = await _call(c.client.artifact(sha256))
        media_type = await _call(c.client.artifact_media_type(sha256))
        if media_type.startswith("text/") or media_type.endswith("json"):
            return {"media_type": media_type, "text": content.decode("utf-8", errors="replace")}
        return {"media_type": media_type, "base64": base64.b64encode(content).decode()}

    @mcp.tool()
    async def cancel_saga(saga_id: str, ctx: Context[Any, Any, Any]) -> dict[str, str]:
        """Cancel a running saga (a researcher: only its own)."""
        c = await caller(ctx, "researcher")
        resolved = await _call(c.client.resolve(saga_id))
        owned = (
            c.accounts is None or c.principal.may("admin") or await c.accounts.owner(resolved) == c.principal.subject
        )
        if not owned:
            raise ToolError("a researcher may cancel only the sagas it submitted")
        sent = await _call(c.client.cancel(resolved, reason=f"cancelled over MCP by {c.principal.subject}"))
        return {"saga_id": str(sent.saga_id), "state": "cancel requested"}

    @mcp.tool()
    async def list_datasets(ctx: Context[Any, Any, Any]) -> list[str]:
        """The built-in datasets a research request may name."""
        c = await caller(ctx, "viewer")
        return list(c.client.datasets())

    @mcp.resource("saga://{saga_id}/report", mime_type="application/json")
    async def report(saga_id: str) -> str:
        """The saga's backtest report."""
        return (await _artifact_of(resolve, saga_id, "report")).decode()

    @mcp.resource("saga://{saga_id}/chart", mime_type="image/png")
    async def chart(saga_id: str) -> bytes:
        """The saga's equity-curve chart."""
        return await _artifact_of(resolve, saga_id, "chart")

    return mcp


async def _call(work: Awaitable[T]) -> T:
    """The client API's refusals as tool errors an agent can read; anything else is a bug."""
    try:
        return await work
    except ClientError as exc:
        raise ToolError(str(exc)) from None


async def _artifact_of(resolve: Resolve, saga_id: str, kind: str) -> bytes:
    c = await resolve(_current_context())
    links = await _call(c.client.artifacts(saga_id))
    found = [a for a in links if a.ref.kind == kind]
    if not found:
        raise ToolError(f"saga {saga_id} has no {kind} (yet)")
    return await _call(c.client.artifact(found[-1].ref.sha256))


def _current_context() -> Context[Any, Any, Any]:
    from mcp.server.lowlevel.server import request_ctx

    return Context(request_context=request_ctx.get())


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
        scope["state"]["mcp_caller"] = Caller(runtime.client, principal, runtime.accounts)
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
        return Caller(client, LOCAL, None)

    build(local).run("stdio")
