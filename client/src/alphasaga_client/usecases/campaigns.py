"""Campaigns as a principal (docs/decisions/0022): a researcher submits one (its owner and its
start recorded in one transaction, as a research submit is); viewers and up read them;
cancelling one is ``research.cancel_saga`` (a campaign is a saga)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .caller import Caller, idempotent_message_id

if TYPE_CHECKING:
    from alphasaga_contracts.campaign import CampaignSpec
    from alphasaga_readmodel.summaries import SagaFilter, SagaSummary
    from alphasaga_shared.eventstore import Conn

    from ..campaigns import CampaignStatus
    from ..commands import Submitted


async def submit_campaign(c: Caller, spec: CampaignSpec, *, idempotency_key: str | None = None) -> Submitted:
    c.require("researcher")
    message_id = None if idempotency_key is None else idempotent_message_id(c.principal, idempotency_key)

    async def record_owner(conn: Conn, saga_id: uuid.UUID) -> bool:
        recorded: bool = await c.accounts.own(saga_id, c.principal, conn)
        return recorded

    return await c.client.submit_campaign_recorded(spec, record_owner, message_id=message_id)


async def campaign_status(c: Caller, campaign: str) -> CampaignStatus:
    c.require("viewer")
    return await c.client.campaign(campaign)


async def list_campaigns(c: Caller, where: SagaFilter) -> list[SagaSummary]:
    c.require("viewer")
    return await c.client.campaigns(where)
