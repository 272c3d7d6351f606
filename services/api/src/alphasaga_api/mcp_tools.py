"""The MCP tools and resources: plain functions over the use cases
(``alphasaga_client.usecases``), each finding its caller in the request's context, calling
one use case and shaping its answer for an agent. A refusal becomes a tool error the agent
can read. ``mcp_server.build`` registers them."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError

from alphasaga_client import ClientError, SagaFilter
from alphasaga_client.usecases import Caller
from alphasaga_client.usecases import campaigns as campaign_uc
from alphasaga_client.usecases import research as uc
from alphasaga_contracts import Priority
from alphasaga_contracts.campaign import CampaignSpec
from alphasaga_contracts.research import ResearchRequest

T = TypeVar("T")
Ctx = Context[Any, Any, Any]
# How a tool finds its caller: from the HTTP request, or the stdio process's own.
Resolve = Callable[[Ctx], Awaitable[Caller]]


class ToolServer(FastMCP):
    """FastMCP that knows how its tools find their caller."""

    def __init__(self, resolve: Resolve, **settings: Any) -> None:
        super().__init__(**settings)
        self.resolve = resolve


async def _caller(ctx: Ctx) -> Caller:
    server = ctx.fastmcp
    assert isinstance(server, ToolServer)
    return await server.resolve(ctx)


async def _answer(work: Awaitable[T]) -> T:
    """A use case's refusal as a tool error an agent can read; anything else is a bug."""
    try:
        return await work
    except ClientError as exc:
        raise ToolError(str(exc)) from None


async def submit_research(
    request: ResearchRequest, ctx: Ctx, idempotency_key: str | None = None, priority: Priority = Priority.NORMAL
) -> dict[str, Any]:
    """Start a research saga on a dataset (see list_datasets) and return its id. The same
    idempotency_key always names the same saga. priority express: its steps never wait
    behind normal sagas'."""
    c = await _caller(ctx)
    submitted = await _answer(uc.submit_research(c, request, idempotency_key=idempotency_key, priority=priority))
    return {"saga_id": str(submitted.saga_id), "state": "submitted"}


async def get_saga(saga_id: str, ctx: Ctx) -> dict[str, Any]:
    """A saga's state, steps with attempts and durations, verdict and metrics."""
    detail = await _answer(uc.saga_detail(await _caller(ctx), saga_id))
    return {
        **detail.summary.as_json(with_state=False),
        "steps": [a.as_json() for a in detail.attempts],
        "trace_id": detail.trace_id,
    }


async def wait_for_saga(saga_id: str, ctx: Ctx, timeout_s: float = 300) -> dict[str, Any]:
    """Wait until the saga ends (or timeout_s passes) and return its state and verdict."""
    summary, ended = await _answer(uc.wait_for_saga(await _caller(ctx), saga_id, timeout_s=timeout_s))
    if ended:
        return summary.as_json(with_state=False)
    return {**summary.as_json(with_state=False), "note": "still running: call again"}


async def list_sagas(
    ctx: Ctx,
    state: Literal["RUNNING", "COMPENSATING", "COMPLETED", "ROLLED_BACK", "COMPENSATION_FAILED"] | None = None,
    dataset: str | None = None,
    verdict: Literal["accepted", "rejected"] | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Sagas, newest first."""
    where = SagaFilter(
        state=state,
        dataset=dataset,
        accepted=None if verdict is None else verdict == "accepted",
        limit=min(max(limit, 1), 200),
    )
    return [s.as_json(with_state=False) for s in await _answer(uc.list_sagas(await _caller(ctx), where))]


async def replay_saga(saga_id: str, version: int, ctx: Ctx) -> dict[str, Any]:
    """Time travel: the saga's state after its event number `version`, and what that event changed."""
    c = await _caller(ctx)
    if version < 1:
        raise ToolError("version counts events from 1")
    _, frame = await _answer(uc.state_at(c, saga_id, version=version))
    return {"version": frame.number, "event": frame.event, "state": frame.state,
            "changes": [ch.as_json() for ch in frame.changes]}  # fmt: skip


async def get_artifact(sha256: str, ctx: Ctx) -> dict[str, Any]:
    """An artifact by its SHA-256: text as text, anything else base64."""
    content, media_type = await _answer(uc.artifact(await _caller(ctx), sha256))
    if media_type.startswith("text/") or media_type.endswith("json"):
        return {"media_type": media_type, "text": content.decode("utf-8", errors="replace")}
    return {"media_type": media_type, "base64": base64.b64encode(content).decode()}


async def cancel_saga(saga_id: str, ctx: Ctx) -> dict[str, str]:
    """Cancel a running saga (a researcher: only its own)."""
    sent = await _answer(uc.cancel_saga(await _caller(ctx), saga_id, via="over MCP"))
    return {"saga_id": str(sent.saga_id), "state": "cancel requested"}


async def list_datasets(ctx: Ctx) -> list[str]:
    """The built-in datasets a research request may name."""
    c = await _caller(ctx)
    try:
        return list(uc.datasets(c))
    except ClientError as exc:
        raise ToolError(str(exc)) from None


async def submit_campaign(spec: CampaignSpec, ctx: Ctx, idempotency_key: str | None = None) -> dict[str, Any]:
    """Start a research campaign: ``budget`` research sagas over every (dataset, family) in
    turn, ``concurrency`` at once, each child's deflated Sharpe ratio counting the trials the
    campaign measured (there is no way to give that count). Returns its id."""
    c = await _caller(ctx)
    submitted = await _answer(campaign_uc.submit_campaign(c, spec, idempotency_key=idempotency_key))
    return {"campaign_id": str(submitted.saga_id), "state": "submitted"}


async def get_campaign(campaign_id: str, ctx: Ctx) -> dict[str, Any]:
    """A campaign's progress (done, running, failed, waiting), the trials its verdicts count,
    and its children ranked by deflated Sharpe ratio; the report's artifacts once made."""
    found = await _answer(campaign_uc.campaign_status(await _caller(ctx), campaign_id))
    return found.as_json()


TOOLS = (
    submit_research,
    submit_campaign,
    get_campaign,
    get_saga,
    wait_for_saga,
    list_sagas,
    replay_saga,
    get_artifact,
    cancel_saga,
    list_datasets,
)


# A resource's arguments are validated by pydantic, which would copy a context annotated
# with type parameters and lose its server: resources take it unparametrized.
async def report(saga_id: str, ctx: Context) -> str:  # type: ignore[type-arg]
    """The saga's backtest report."""
    return (await _answer(uc.artifact_of_kind(await _caller(ctx), saga_id, "report"))).decode()


async def chart(saga_id: str, ctx: Context) -> bytes:  # type: ignore[type-arg]
    """The saga's equity-curve chart."""
    return await _answer(uc.artifact_of_kind(await _caller(ctx), saga_id, "chart"))


# (URI template, media type, function)
RESOURCES = (
    ("saga://{saga_id}/report", "application/json", report),
    ("saga://{saga_id}/chart", "image/png", chart),
)
