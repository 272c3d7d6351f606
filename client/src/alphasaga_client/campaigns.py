"""Research campaigns (docs/decisions/0022): submit one, read its progress and ranking, list
them, and its report's artifacts. A campaign is a saga (workflow ``campaign``): cancelling
it is ``cancel``, and every saga read (events, replay, check) works on it too."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alphasaga_shared.errors import InvalidRequest, NotFound

from .commands import Record, Submitted
from .core import Core

if TYPE_CHECKING:
    from alphasaga_contracts.campaign import CampaignSpec, Measured, RankedTrial, TrialOutcome
    from alphasaga_readmodel.summaries import SagaFilter, SagaSummary
    from alphasaga_shared.wire import Envelope

CAMPAIGN = "campaign"


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    """A campaign as its events leave it: progress, the ranking so far (every completed
    child's deflated Sharpe with the trials counted now), and its report once made."""

    saga_id: uuid.UUID
    state: str
    failure: str | None
    spec: CampaignSpec
    done: int  # children that completed
    running: int
    failed: int  # children that ended without completing (rolled back, refused...)
    waiting: int  # children not started yet
    measured: Measured
    ranking: list[RankedTrial]
    outcomes: list[TrialOutcome]
    report: dict[str, Any] | None  # the report step's outputs: table, chart, equity, trials...

    def as_json(self) -> dict[str, Any]:
        return {
            "saga_id": str(self.saga_id),
            "state": self.state,
            "failure": self.failure,
            "spec": self.spec.model_dump(mode="json"),
            "progress": {"done": self.done, "running": self.running, "failed": self.failed, "waiting": self.waiting},
            "trials": self.measured.trials,
            "trial_sharpe_std": self.measured.trial_sharpe_std,
            "ranking": [r.model_dump(mode="json") for r in self.ranking],
            "outcomes": [o.model_dump(mode="json") for o in self.outcomes],
            "report": self.report,
        }


class Campaigns(Core):
    def campaign_envelope(
        self, spec: CampaignSpec, *, saga_id: uuid.UUID | None = None, message_id: str | None = None
    ) -> Envelope:
        from alphasaga_contracts import saga as sg
        from alphasaga_shared.wire import envelope_for

        saga_id = saga_id or (sg.derived_saga_id(message_id) if message_id else uuid.uuid4())
        return envelope_for(
            sg.StartCampaign(saga_id=saga_id, spec=spec), correlation_id=str(saga_id), message_id=message_id
        )

    async def submit_campaign(
        self, spec: CampaignSpec, *, saga_id: uuid.UUID | None = None, message_id: str | None = None
    ) -> Submitted:
        """Start a campaign: one message; the orchestrator starts its children."""
        env = self.campaign_envelope(spec, saga_id=saga_id, message_id=message_id)
        tip = await self.lifecycle_cursor()  # type: ignore[attr-defined]
        entry_id = await self._send(self.requests_stream(), env)  # type: ignore[attr-defined]
        return Submitted(uuid.UUID(env.correlation_id), env.message_id, entry_id, tip)

    async def submit_campaign_recorded(
        self, spec: CampaignSpec, record: Record, *, message_id: str | None = None
    ) -> Submitted:
        """``submit_campaign`` recorded in the outbox with what ``record`` writes (as ``submit_recorded``)."""
        env = self.campaign_envelope(spec, message_id=message_id)
        submitted: Submitted = await self._start_recorded(env, record)  # type: ignore[attr-defined]
        return submitted

    async def campaigns(self, where: SagaFilter | None = None) -> list[SagaSummary]:
        """Campaigns, newest first, from the saga list (``sagas`` with workflow ``campaign``)."""
        import dataclasses

        from alphasaga_readmodel.summaries import SagaFilter

        where = dataclasses.replace(where or SagaFilter(), workflow=CAMPAIGN)
        found: list[SagaSummary] = await self.sagas(where)  # type: ignore[attr-defined]
        return found

    async def campaign(self, campaign: str | uuid.UUID) -> CampaignStatus:
        """A campaign's progress and ranking, folded from its events (a few hundred at most)."""
        from alphasaga_contracts.campaign import CampaignSpec, TrialOutcome, rank

        saga_id = await self.resolve(campaign)
        rows = await (await self.saga_store()).events_of(saga_id)
        if not rows:
            raise NotFound(f"campaign {saga_id} has not started (or was refused): see alphasaga status {saga_id}")
        saga = (await self.reader()).mapper.fold(saga_id, rows)
        if saga is None or saga.workflow != CAMPAIGN:
            raise InvalidRequest(f"saga {saga_id} is not a campaign")
        spec = CampaignSpec.model_validate(saga.context["request"])
        outcomes = [TrialOutcome.model_validate(o) for o in saga.context.get("outcomes", [])]
        measured, ranking = rank(outcomes)
        states = [c["state"] for c in saga.children().values()]
        done, running = states.count("COMPLETED"), states.count("RUNNING")
        report_keys = ("table", "chart", "equity", "trials", "trial_sharpe_std")
        report = {k: saga.context[k] for k in report_keys if k in saga.context} if "report" in saga.completed else None
        return CampaignStatus(
            saga_id=saga_id,
            state=str(saga.state),
            failure=saga.failure,
            spec=spec,
            done=done,
            running=running,
            failed=len(states) - done - running,
            waiting=spec.budget - len(states),
            measured=measured,
            ranking=ranking,
            outcomes=outcomes,
            report=report,
        )
