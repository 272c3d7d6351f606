"""Research and sagas: submit, list, detail, history, time travel, the live stream, cancel
and artifacts. Each route calls a use case (``alphasaga_client.usecases``) and shapes its
answer; nothing more."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder

from alphasaga_client import SagaFilter
from alphasaga_client.usecases import research
from alphasaga_contracts import Priority, SagaState
from alphasaga_contracts.research import ResearchRequest
from alphasaga_contracts.saga import WORKFLOW_NAME

from . import models
from .problems import Problem
from .security import Acting, authorize, client_address, limit, role, runtime

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
# A saga id, or a unique prefix of one (at least 4 characters), as the CLI accepts.
SagaId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{4,36}$", description="A saga id or a unique prefix of one")]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The artifact's SHA-256, 64 lowercase hex digits")]
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,128}$"


@router.post("/research", status_code=202, response_model=models.Submitted, openapi_extra=role("researcher"))
async def submit(
    request: Request,
    body: ResearchRequest,
    who: Acting,
    workflow: Annotated[str, Query(pattern=WORKFLOW_NAME)] = "research",
    workflow_version: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="A version to run (a preview); default: the newest")
    ] = None,
    idempotency_key: Annotated[str | None, Header(pattern=IDEMPOTENCY_KEY)] = None,
    priority: Annotated[
        Priority, Query(description="express: the saga's steps never wait behind normal sagas' (the express lane)")
    ] = Priority.NORMAL,
) -> models.Submitted:
    """Submit a research request. The same ``Idempotency-Key`` from the same caller always
    names the same saga, however often it is retried. The saga id answers at once: PENDING
    until the orchestrator starts it, REJECTED with its reason if it refuses to."""
    rt = runtime(request)
    await limit(request, "submit", who.subject, rt.api.submit_per_minute)
    await limit(request, "submit-ip", client_address(request), rt.api.submit_ip_per_minute)
    submitted = await research.submit_research(
        who,
        body,
        workflow=workflow,
        idempotency_key=idempotency_key,
        workflow_version=workflow_version,
        priority=priority,
    )
    sid = str(submitted.saga_id)
    return models.Submitted(
        saga_id=submitted.saga_id,
        message_id=submitted.message_id,
        links={"self": f"/v1/sagas/{sid}", "stream": f"/v1/sagas/{sid}/stream", "events": f"/v1/sagas/{sid}/events"},
    )


@router.post(
    "/sagas/{saga_id}/fork", status_code=202, response_model=models.Submitted, openapi_extra=role("researcher")
)
async def fork(
    request: Request,
    saga_id: SagaId,
    body: models.ForkRequest,
    who: Acting,
    idempotency_key: Annotated[str | None, Header(pattern=IDEMPOTENCY_KEY)] = None,
) -> models.Submitted:
    """Start a new saga from a step of this one (as ``alphasaga fork``): the steps that step
    needs are reused, with their artifacts; ``set`` changes ``request.<field>`` or a value in
    the saga's context by its path. Limited as submits are."""
    rt = runtime(request)
    await limit(request, "submit", who.subject, rt.api.submit_per_minute)
    await limit(request, "submit-ip", client_address(request), rt.api.submit_ip_per_minute)
    submitted = await research.fork_saga(who, saga_id, body.from_step, body.set, idempotency_key=idempotency_key)
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
    who: Acting,
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
    id_prefix: Annotated[str | None, Query(pattern=r"^[0-9a-f-]{1,36}$", description="The saga id starts so")] = None,
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
        id_prefix=id_prefix,
    )
    rows = await research.list_sagas(who, where)
    page, more = rows[:limit], len(rows) > limit
    return models.SagaPage(
        items=[s.as_json(with_state=False) for s in page],
        next_cursor=_cursor(page[-1].started_at, page[-1].saga_id) if more else None,
    )


@router.get("/saga-counts", openapi_extra=role("viewer"))
async def saga_counts(who: Acting) -> dict[str, int]:
    """How many sagas are in each state (a state with none is left out)."""
    return await research.state_counts(who)


@router.get("/sagas/{saga_id}", response_model=models.SagaDetail, openapi_extra=role("viewer"))
async def get_saga(who: Acting, saga_id: SagaId) -> models.SagaDetail:
    """The saga's status, its steps with their attempts and durations, its outcome and trace id.
    A saga id submitted here answers before its saga exists: PENDING (with ``submitted_at``)
    until the orchestrator starts it, or REJECTED, with the orchestrator's reason as the
    outcome's ``failure``, when it refused to."""
    detail = await research.saga_detail(who, saga_id)
    s = detail.summary
    outcome = None
    if s.terminal:
        outcome = {"state": s.state, "verdict": s.verdict, "metrics": s.metrics, "failure": s.failure}
    return models.SagaDetail(
        saga=s.as_json(with_state=False),
        steps=[a.as_json() for a in detail.attempts],
        outcome=outcome,
        trace_id=detail.trace_id,
    )


@router.get("/sagas/{saga_id}/events", openapi_extra=role("viewer"))
async def saga_events(
    who: Acting, saga_id: SagaId, after: Annotated[int, Query(ge=0, le=10_000_000)] = 0
) -> list[dict[str, Any]]:
    """The saga's own events, oldest first, after version ``after``."""
    from alphasaga_client.timetravel import event_name, readable

    rows = await research.saga_events(who, saga_id, after_version=after)
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
    who: Acting,
    saga_id: SagaId,
    version: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
    at: dt.datetime | None = None,
) -> models.StateAt:
    """Time travel: the state folded up to event ``version`` (or the last one recorded by
    ``at``), and what that event changed."""
    if at is not None and at.tzinfo is None:
        raise Problem(422, "invalid-request", "give ?at= with a time zone (2026-01-05T09:00:00Z)")
    replay, frame = await research.state_at(who, saga_id, version=version, at=at)
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
async def cancel(saga_id: SagaId, who: Acting) -> dict[str, str]:
    """Cancel a running saga: a researcher its own, an admin any. 409 once it has ended, and
    while it has not started yet (PENDING)."""
    sent = await research.cancel_saga(who, saga_id, via="through the API")
    return {"saga_id": str(sent.saga_id), "message_id": sent.message_id}


@router.get("/sagas/{saga_id}/artifacts", openapi_extra=role("viewer"))
async def artifacts(who: Acting, saga_id: SagaId) -> list[dict[str, Any]]:
    links = await research.artifacts(who, saga_id)
    return [
        {"step": a.step, "name": a.name, **a.ref.model_dump(), "href": f"/v1/artifacts/{a.ref.sha256}"} for a in links
    ]


@router.get(
    "/artifacts/{sha256}",
    openapi_extra=role("viewer"),
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The artifact's bytes"}},
)
async def artifact(who: Acting, sha256: Sha256) -> Response:
    """An artifact's content with its media type, checked against its hash before it is sent."""
    content, media_type = await research.artifact(who, sha256)
    return Response(
        content,
        media_type=media_type,
        headers={"ETag": f'"{sha256}"', "Cache-Control": "private, max-age=31536000, immutable"},
    )


@router.get("/datasets", openapi_extra=role("viewer"))
async def datasets(who: Acting) -> list[str]:
    """The built-in datasets a request may name."""
    return list(research.datasets(who))
