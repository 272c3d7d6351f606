"""Research and sagas: submit, list, detail, history, time travel, the live stream, cancel
and artifacts. Each route calls the client API and shapes its answer; nothing more."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder

from alphasaga_client import AlphaSaga, SagaFilter
from alphasaga_client.accounts import Principal
from alphasaga_contracts import SagaState
from alphasaga_contracts.research import ResearchRequest
from alphasaga_contracts.saga import WORKFLOW_NAME

from . import models
from .problems import Problem
from .security import authorize, client_address, data_path_refusal, idempotent_message_id, limit, role, runtime

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
Caller = Annotated[Principal, Depends(authorize)]
# A saga id, or a unique prefix of one (at least 4 characters), as the CLI accepts.
SagaId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{4,36}$", description="A saga id or a unique prefix of one")]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The artifact's SHA-256, 64 lowercase hex digits")]
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,128}$"


def _client(request: Request) -> AlphaSaga:
    return runtime(request).client


@router.post("/research", status_code=202, response_model=models.Submitted, openapi_extra=role("researcher"))
async def submit(
    request: Request,
    body: ResearchRequest,
    who: Caller,
    workflow: Annotated[str, Query(pattern=WORKFLOW_NAME)] = "research",
    idempotency_key: Annotated[str | None, Header(pattern=IDEMPOTENCY_KEY)] = None,
) -> models.Submitted:
    """Submit a research request. The same ``Idempotency-Key`` from the same caller always
    names the same saga, however often it is retried."""
    if (refusal := data_path_refusal(who, body)) is not None:
        raise Problem(403, "forbidden", refusal)
    rt = runtime(request)
    await limit(request, "submit", who.subject, rt.api.submit_per_minute)
    await limit(request, "submit-ip", client_address(request), rt.api.submit_ip_per_minute)
    message_id = None if idempotency_key is None else idempotent_message_id(who, idempotency_key)
    submitted = await rt.client.submit(body, workflow=workflow, message_id=message_id)
    await rt.accounts.own(submitted.saga_id, who)
    sid = str(submitted.saga_id)
    return models.Submitted(
        saga_id=submitted.saga_id,
        message_id=submitted.message_id,
        links={"self": f"/v1/sagas/{sid}", "stream": f"/v1/sagas/{sid}/stream", "events": f"/v1/sagas/{sid}/events"},
    )


def _cursor(at: dt.datetime, saga_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{saga_id}".encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, saga_id = text.partition("|")
        return dt.datetime.fromisoformat(at), uuid.UUID(saga_id)
    except ValueError:
        raise Problem(422, "invalid-cursor", "the cursor is not one this API gave") from None


@router.get("/sagas", response_model=models.SagaPage, openapi_extra=role("viewer"))
async def list_sagas(
    request: Request,
    state: SagaState | None = None,
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,  # a workflow's version: int4 in SQL
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    verdict: Literal["accepted", "rejected"] | None = None,
    min_sharpe: Annotated[float | None, Query(ge=-100, le=100)] = None,
    max_sharpe: Annotated[float | None, Query(ge=-100, le=100)] = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    sort: Literal["newest", "oldest"] = "newest",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> models.SagaPage:
    """Sagas, newest (or oldest) first, a page at a time."""
    if min_sharpe is not None and max_sharpe is not None and min_sharpe > max_sharpe:
        raise Problem(422, "invalid-request", "min_sharpe is above max_sharpe")
    if created_after and created_before and created_after >= created_before:
        raise Problem(422, "invalid-request", "created_after is not before created_before")
    where = SagaFilter(
        state=state,
        workflow=workflow,
        workflow_version=version,
        dataset=dataset,
        accepted=None if verdict is None else verdict == "accepted",
        min_sharpe=min_sharpe,
        max_sharpe=max_sharpe,
        started_after=created_after,
        started_before=created_before,
        limit=limit + 1,
        oldest_first=sort == "oldest",
        after=_after(cursor) if cursor else None,
    )
    rows = await _client(request).sagas(where)
    page, more = rows[:limit], len(rows) > limit
    return models.SagaPage(
        items=[s.as_json(with_state=False) for s in page],
        next_cursor=_cursor(page[-1].started_at, page[-1].saga_id) if more else None,
    )


@router.get("/sagas/{saga_id}", response_model=models.SagaDetail, openapi_extra=role("viewer"))
async def get_saga(request: Request, saga_id: SagaId) -> models.SagaDetail:
    """The saga's status, its steps with their attempts and durations, its outcome and trace id."""
    detail = await _client(request).detail(saga_id)
    s = detail.summary
    outcome = None
    if SagaState(s.state).terminal:
        outcome = {"state": s.state, "verdict": s.verdict, "metrics": s.metrics, "failure": s.failure}
    return models.SagaDetail(
        saga=s.as_json(with_state=False),
        steps=[a.as_json() for a in detail.attempts],
        outcome=outcome,
        trace_id=detail.trace_id,
    )


@router.get("/sagas/{saga_id}/events", openapi_extra=role("viewer"))
async def saga_events(
    request: Request, saga_id: SagaId, after: Annotated[int, Query(ge=0, le=10_000_000)] = 0
) -> list[dict[str, Any]]:
    """The saga's own events, oldest first, after version ``after``."""
    from alphasaga_client.timetravel import event_name, readable

    rows = await _client(request).events(saga_id, after_version=after)
    return [
        {
            "version": r.version,
            "event": event_name(r.type),
            "type": r.type,
            "recorded_at": r.recorded_at.isoformat(),
            "data": jsonable_encoder(readable(r.data)),  # a saga id as its UUID, not the store's encoding
        }
        for r in rows
    ]


@router.get("/sagas/{saga_id}/state", response_model=models.StateAt, openapi_extra=role("viewer"))
async def saga_state(
    request: Request,
    saga_id: SagaId,
    version: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
    at: dt.datetime | None = None,
) -> models.StateAt:
    """Time travel: the state folded up to event ``version`` (or the last one recorded by
    ``at``), and what that event changed."""
    if at is not None and at.tzinfo is None:
        raise Problem(422, "invalid-request", "give ?at= with a time zone (2026-01-05T09:00:00Z)")
    replay = await _client(request).replay(saga_id, to=version, at=at)
    if not replay.frames:
        raise Problem(404, "not-found", f"saga {replay.saga_id} had no event by then")
    if version is not None and version > replay.total_events:
        raise Problem(404, "not-found", f"saga {replay.saga_id} has {replay.total_events} events, not {version}")
    frame = replay.frames[-1]
    return models.StateAt(
        saga_id=replay.saga_id,
        version=frame.number,
        event=frame.event,
        recorded_at=frame.row.recorded_at.isoformat(),
        total_events=replay.total_events,
        state=frame.state,
        changes=[c.as_json() for c in frame.changes],
    )


@router.post("/sagas/{saga_id}/cancel", status_code=202, openapi_extra=role("researcher"))
async def cancel(request: Request, saga_id: SagaId, who: Caller) -> dict[str, str]:
    """Cancel a running saga: a researcher its own, an admin any. 409 once it has ended."""
    rt = runtime(request)
    resolved = await rt.client.resolve(saga_id)
    if not who.may("admin") and await rt.accounts.owner(resolved) != who.subject:
        raise Problem(403, "forbidden", "a researcher may cancel only the sagas it submitted")
    sent = await rt.client.cancel(resolved, reason=f"cancelled through the API by {who.subject}")
    return {"saga_id": str(sent.saga_id), "message_id": sent.message_id}


@router.get("/sagas/{saga_id}/artifacts", openapi_extra=role("viewer"))
async def artifacts(request: Request, saga_id: SagaId) -> list[dict[str, Any]]:
    links = await _client(request).artifacts(saga_id)
    return [
        {"step": a.step, "name": a.name, **a.ref.model_dump(), "href": f"/v1/artifacts/{a.ref.sha256}"} for a in links
    ]


@router.get(
    "/artifacts/{sha256}",
    openapi_extra=role("viewer"),
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The artifact's bytes"}},
)
async def artifact(request: Request, sha256: Sha256) -> Response:
    """An artifact's content with its media type, checked against its hash before it is sent."""
    client = _client(request)
    content = await client.artifact(sha256)
    media_type = await client.artifact_media_type(sha256)
    return Response(
        content,
        media_type=media_type,
        headers={"ETag": f'"{sha256}"', "Cache-Control": "private, max-age=31536000, immutable"},
    )


@router.get("/datasets", openapi_extra=role("viewer"))
async def datasets(request: Request) -> list[str]:
    """The built-in datasets a request may name."""
    return list(_client(request).datasets())
