"""The explorer's routes: pages (HTML), the fragments its scripts swap in, its live
stream and its actions. Each calls a use case and renders its answer; the rules (who may
cancel, who may redrive) are the use cases'."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from alphasaga_accounts import AuthFailed, Locked
from alphasaga_client import SagaFilter
from alphasaga_client.usecases import Caller, admin, campaigns, research, system
from alphasaga_contracts import SagaState
from alphasaga_contracts.envelope import CORRELATION_ID, TYPE
from alphasaga_contracts.research import ResearchRequest
from alphasaga_readmodel.summaries import SagaSummary

from .. import models
from ..problems import Problem
from ..routes_admin import EntryId, Stream
from ..routes_research import SagaId, Sha256
from ..routes_stream import ENTRY_ID, with_heartbeat
from ..security import client_address, limit, runtime
from . import filters, session, views
from .timeline import gantt, seconds

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(seconds=seconds, states=list(SagaState))
router = APIRouter(prefix="/explorer", include_in_schema=False)
Page = Annotated[Caller | None, Depends(session.caller)]
Acting = Annotated[Caller, Depends(session.acting)]
# Artifacts shown inline on the saga page; a larger one is a download link only.
INLINE_BYTES = 512 * 1024
MAX_FORM_BYTES = 8 * 1024
CAMPAIGNS_SHOWN = 200


def _sign_in(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/explorer/login?{urllib.parse.urlencode({'next': target})}", status_code=303)


def _page(request: Request, name: str, c: Caller, **context: Any) -> HTMLResponse:
    context.update(who=c.principal, jaeger=os.environ.get("ALPHASAGA_JAEGER_URL", "").rstrip("/"))
    return templates.TemplateResponse(request, name, context, headers={"Cache-Control": "no-store"})


# --- signing in ---


@router.get("/login")
async def login_page(request: Request, next: str = "/explorer/") -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": _local(next), "error": None})


@router.post("/login")
async def login(request: Request) -> Response:
    """A form post (no script needed): a username and password, or an API key."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Problem(413, "body-too-large", "the sign-in form is too large")
    form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
    target = _local(form.get("next", "/explorer/"))
    rt = runtime(request)
    address = client_address(request)
    await limit(request, "login", address, rt.api.login_per_minute)
    try:
        if key := form.get("api_key", "").strip():
            await rt.accounts.key_principal(key)
            value = key
        else:
            signed = await rt.accounts.login(form.get("username", ""), form.get("password", ""), source=address)
            value = session.session_cookie(request, f"user:{signed.user.username}", signed.session_id)
    except (AuthFailed, Locked) as exc:
        context = {"next": target, "error": str(exc) or "sign-in refused"}
        return templates.TemplateResponse(request, "login.html", context, status_code=401)
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(
        session.COOKIE,
        value,
        max_age=int(session.LIFETIME.total_seconds()),
        path=session.PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.post("/logout")
async def logout(request: Request, c: Acting) -> Response:
    if c.principal.session_id is not None:
        await runtime(request).accounts.logout(c.principal.session_id, actor=c.subject)
    answer = Response(status_code=204)
    answer.delete_cookie(session.COOKIE, path=session.PATH)
    return answer


def _local(target: str) -> str:
    """Only a path of the explorer: a sign-in never sends the browser elsewhere."""
    return target if target.startswith("/explorer/") and "//" not in target and "\\" not in target else "/explorer/"


# --- the saga list ---


@router.get("/")
async def saga_list(request: Request, c: Page) -> Response:
    if c is None:
        return _sign_in(request)
    return _page(request, "list.html", c, **await _list_context(request, c))


@router.get("/rows")
async def saga_rows(request: Request, c: Page) -> Response:
    """The counts and the table's rows, for the list's live refresh."""
    if c is None:
        raise Problem(401, "unauthorized", "sign in to the explorer first")
    return _page(request, "rows.html", c, **await _list_context(request, c))


async def _list_context(request: Request, c: Caller) -> dict[str, Any]:
    params = dict(request.query_params)
    cursor = views.read_cursor(params.get("cursor", ""))
    query = filters.parse(params, cursor=cursor)
    rows: list[SagaSummary] = []
    counts: dict[str, int] = {}
    if not query.errors:
        rows, counts = await asyncio.gather(research.list_sagas(c, query.where), research.state_counts(c))
    page, more = rows[: filters.PAGE], len(rows) > filters.PAGE
    next_cursor = views.cursor(page[-1].started_at, page[-1].saga_id) if more and page else None
    return {
        "query": query,
        "rows": [views.row(s) for s in page],
        "counts": counts,
        "total": sum(counts.values()),
        "next_url": f"?{query.url(cursor=next_cursor)}" if next_cursor else None,
        "first_page": cursor is None,
        "datasets": research.datasets(c),
        "may_submit": c.principal.may("researcher"),
    }


@router.post("/research")
async def submit(request: Request, body: ResearchRequest, c: Acting) -> dict[str, str]:
    """A research request from the list page's form, limited as the API's submits are."""
    rt = runtime(request)
    await limit(request, "submit", c.subject, rt.api.submit_per_minute)
    await limit(request, "submit-ip", client_address(request), rt.api.submit_ip_per_minute)
    submitted = await research.submit_research(c, body)
    return {"saga_id": str(submitted.saga_id), "href": f"/explorer/sagas/{submitted.saga_id}"}


@router.get("/live")
async def live(
    request: Request,
    c: Page,
    last_event_id: Annotated[str | None, Header(pattern=ENTRY_ID)] = None,
) -> StreamingResponse:
    """Every saga's lifecycle events as Server-Sent Events (a saga id and its event type):
    the list refreshes itself on each. A reconnecting EventSource resumes after its
    ``Last-Event-ID``; the stream ends after the API's stream timeout, and the browser
    reconnects."""
    if c is None:
        raise Problem(401, "unauthorized", "sign in to the explorer first")
    entries = research.lifecycle(c, after=last_event_id)
    return StreamingResponse(
        _lifecycle_frames(entries, runtime(request).api.stream_timeout_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _lifecycle_frames(entries: AsyncIterator[Any], timeout_s: float) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"  # the browser reconnects after a second, with its Last-Event-ID

    async def frames() -> AsyncIterator[str]:
        try:
            async with asyncio.timeout(timeout_s):
                async for entry in entries:
                    data = {"saga_id": entry.fields.get(CORRELATION_ID), "type": entry.fields.get(TYPE)}
                    yield f"id: {entry.entry_id}\nevent: saga\ndata: {json.dumps(data)}\n\n"
        except TimeoutError:
            pass  # the stream's time is up: the browser reconnects and resumes

    async for text in with_heartbeat(frames(), "every saga's lifecycle"):
        yield text


# --- a saga ---


@router.get("/sagas/{saga_id}")
async def saga_page(
    request: Request, c: Page, saga_id: SagaId, version: Annotated[int | None, Query(ge=1, le=10_000_000)] = None
) -> Response:
    if c is None:
        return _sign_in(request)
    detail = await research.saga_detail(c, saga_id)
    summary = detail.summary
    rows = await research.saga_events(c, str(summary.saga_id))
    links = await research.artifacts(c, str(summary.saga_id))
    total = len(rows)
    shown = min(version or total, total) if total else None
    frame = None
    if shown:
        _, frame = await research.state_at(c, str(summary.saga_id), version=shown)
    may_cancel = not summary.terminal and await research.cancel_refusal(c, summary.saga_id) is None
    artifacts = await views.artifacts(c, links, INLINE_BYTES)
    report = views.report(artifacts)
    return _page(
        request,
        "saga.html",
        c,
        saga=views.row(summary),
        summary=summary,
        forked_from=views.forked_from(summary),
        parent_campaign=views.parent_campaign(summary),
        trace_id=detail.trace_id,
        gantt=gantt(rows, runtime(request).tokens.clock()),
        events=[views.event(r) for r in rows],
        total=total,
        shown=shown,
        frame=views.frame(frame) if frame else None,
        may_cancel=may_cancel,
        may_fork=c.principal.may("researcher") and summary.terminal,
        steps=list(dict.fromkeys(a.step for a in detail.attempts)),
        artifacts=artifacts,
        code=views.code(artifacts),
        model=views.model(rows),
        report=report,
        equity=views.equity_plot({"this saga": report}) if report else None,
    )


@router.get("/sagas/{saga_id}/state")
async def saga_state(
    request: Request, c: Page, saga_id: SagaId, version: Annotated[int, Query(ge=1, le=10_000_000)]
) -> Response:
    """The time-travel panel at ``version``."""
    if c is None:
        raise Problem(401, "unauthorized", "sign in to the explorer first")
    replay, frame = await research.state_at(c, saga_id, version=version)
    return _page(request, "state.html", c, frame=views.frame(frame), total=replay.total_events)


@router.post("/sagas/{saga_id}/fork")
async def fork(request: Request, saga_id: SagaId, body: models.ForkRequest, c: Acting) -> dict[str, str]:
    """Run the saga again from a step (Temporal's "reset"), limited as submits are."""
    rt = runtime(request)
    await limit(request, "submit", c.subject, rt.api.submit_per_minute)
    await limit(request, "submit-ip", client_address(request), rt.api.submit_ip_per_minute)
    submitted = await research.fork_saga(c, saga_id, body.from_step, body.set)
    return {"saga_id": str(submitted.saga_id), "href": f"/explorer/sagas/{submitted.saga_id}"}


@router.post("/sagas/{saga_id}/cancel", status_code=202)
async def cancel(saga_id: SagaId, c: Acting) -> dict[str, str]:
    sent = await research.cancel_saga(c, saga_id, via="through the explorer")
    return {"saga_id": str(sent.saga_id), "message_id": sent.message_id}


@router.get("/artifacts/{sha256}")
async def artifact(c: Page, sha256: Sha256) -> Response:
    if c is None:
        raise Problem(401, "unauthorized", "sign in to the explorer first")
    content, media_type = await research.artifact(c, sha256)
    # Shown by the browser only as what it says it is, never sniffed into HTML.
    return Response(
        content,
        media_type=media_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )


@router.get("/compare")
async def compare(
    request: Request,
    c: Page,
    a: Annotated[str, Query(pattern=r"^[0-9a-fA-F-]{4,36}$")],
    b: Annotated[str, Query(pattern=r"^[0-9a-fA-F-]{4,36}$")],
) -> Response:
    """Two sagas side by side: their first divergence, what differs step by step, and both
    equity curves on one chart."""
    if c is None:
        return _sign_in(request)
    found = await research.compare_sagas(c, a, b)
    reports = {}
    for label, saga_id in (("A", found.a), ("B", found.b)):
        reports[f"{label} {str(saga_id)[:8]}"] = views.report(
            await views.artifacts(c, await research.artifacts(c, str(saga_id)), INLINE_BYTES)
        )
    return _page(request, "compare.html", c, diff=jsonable_encoder(found.as_json()), equity=views.equity_plot(reports))


# --- campaigns ---


@router.get("/campaigns")
async def campaign_list(request: Request, c: Page) -> Response:
    """The newest campaigns, one page; older ones are in the saga list filtered by workflow, paged."""
    if c is None:
        return _sign_in(request)
    found = await campaigns.list_campaigns(c, SagaFilter(limit=CAMPAIGNS_SHOWN))
    return _page(request, "campaigns.html", c, rows=[views.row(s) for s in found])


@router.get("/campaigns/{saga_id}")
async def campaign_page(request: Request, c: Page, saga_id: SagaId) -> Response:
    """A campaign's progress, the trials its verdicts count, its ranking by deflated Sharpe
    and its report's artifacts; cancel when the caller may (the use case decides)."""
    if c is None:
        return _sign_in(request)
    status = await campaigns.campaign_status(c, saga_id)
    shown = views.campaign(status)
    may_cancel = not shown["terminal"] and await research.cancel_refusal(c, status.saga_id) is None
    return _page(request, "campaign.html", c, campaign=shown, may_cancel=may_cancel)


# --- operations ---


@router.get("/dead-letters")
async def dead_letters_page(request: Request, c: Page) -> Response:
    if c is None:
        return _sign_in(request)
    if not c.principal.may("admin"):
        return _page(request, "forbidden.html", c, needed="admin")
    letters = await admin.dead_letters(c)
    shown = [{**d.as_json(), "payload": json.dumps(d.fields, indent=2, sort_keys=True)} for d in letters]
    return _page(request, "dead_letters.html", c, letters=jsonable_encoder(shown))


@router.post("/dead-letters/{entry_id}/redrive")
async def redrive(c: Acting, entry_id: EntryId, stream: Stream = None) -> dict[str, str]:
    letter, new_entry_id = await admin.redrive(c, entry_id, stream)
    return {"source_stream": letter.source_stream, "entry_id": new_entry_id}


@router.delete("/dead-letters/{entry_id}", status_code=204)
async def purge(c: Acting, entry_id: EntryId, stream: Stream = None) -> Response:
    await admin.purge(c, entry_id, stream)
    return Response(status_code=204)


@router.get("/system")
async def system_page(request: Request, c: Page) -> Response:
    if c is None:
        return _sign_in(request)
    probes, lags = await asyncio.gather(system.readiness(c), system.group_lags(c))
    return _page(request, "system.html", c, probes=probes, lags=lags)
