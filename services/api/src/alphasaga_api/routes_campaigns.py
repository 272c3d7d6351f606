"""Research campaigns (docs/decisions/0022): submit, list, progress and ranking, cancel, and
the report. Each route calls a use case and shapes its answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request

from alphasaga_client import SagaFilter
from alphasaga_client.usecases import campaigns, research
from alphasaga_contracts.campaign import CampaignSpec

from . import models
from .problems import Problem
from .routes_research import IDEMPOTENCY_KEY, SagaId
from .security import Acting, authorize, client_address, limit, role, runtime

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])


@router.post("/campaigns", status_code=202, response_model=models.Submitted, openapi_extra=role("researcher"))
async def submit(
    request: Request,
    body: CampaignSpec,
    who: Acting,
    idempotency_key: Annotated[str | None, Header(pattern=IDEMPOTENCY_KEY)] = None,
) -> models.Submitted:
    """Submit a research campaign: one call; the orchestrator starts its children, at most
    ``concurrency`` at once. The trial count each child's deflated Sharpe ratio uses is the
    campaign's own: a body that gives ``trials`` or ``trial_sharpe_std`` is refused (422).
    Limited as a submit is."""
    rt = runtime(request)
    await limit(request, "submit", who.subject, rt.api.submit_per_minute)
    await limit(request, "submit-ip", client_address(request), rt.api.submit_ip_per_minute)
    submitted = await campaigns.submit_campaign(who, body, idempotency_key=idempotency_key)
    cid = str(submitted.saga_id)
    return models.Submitted(
        saga_id=submitted.saga_id,
        message_id=submitted.message_id,
        links={"self": f"/v1/campaigns/{cid}", "saga": f"/v1/sagas/{cid}", "report": f"/v1/campaigns/{cid}/report"},
    )


@router.get("/campaigns", openapi_extra=role("viewer"))
async def list_campaigns(
    who: Acting, limit_: Annotated[int, Query(alias="limit", ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    """Campaigns, newest first, as rows of the saga list."""
    found = await campaigns.list_campaigns(who, SagaFilter(limit=limit_))
    return [s.as_json(with_state=False) for s in found]


@router.get("/campaigns/{saga_id}", openapi_extra=role("viewer"))
async def get_campaign(who: Acting, saga_id: SagaId) -> dict[str, Any]:
    """Progress (done, running, failed, waiting), the trials the verdicts count, and the
    ranking by deflated Sharpe ratio with the trials counted now; each child's outcome."""
    return (await campaigns.campaign_status(who, saga_id)).as_json()


@router.post("/campaigns/{saga_id}/cancel", status_code=202, openapi_extra=role("researcher"))
async def cancel(saga_id: SagaId, who: Acting) -> dict[str, str]:
    """Cancel a campaign: its running children are cancelled and compensate what they did;
    it ends ROLLED_BACK once they have ended (a researcher its own campaigns, an admin any)."""
    sent = await research.cancel_saga(who, saga_id, via="over HTTP")
    return {"saga_id": str(sent.saga_id), "message_id": sent.message_id}


@router.get("/campaigns/{saga_id}/report", openapi_extra=role("viewer"))
async def report(who: Acting, saga_id: SagaId) -> dict[str, Any]:
    """A finished campaign's report: the ranked table (CSV), out-of-sample Sharpe by trial
    number and the top five's equity (PNG), as artifact links, with the trials counted."""
    found = await campaigns.campaign_status(who, saga_id)
    if found.report is None:
        raise Problem(409, "no-report-yet", f"campaign {found.saga_id} has no report yet ({found.state})")
    links = {k: f"/v1/artifacts/{found.report[k]['sha256']}" for k in ("table", "chart", "equity")}
    return {**found.as_json(), "links": links}
