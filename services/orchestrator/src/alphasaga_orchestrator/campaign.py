"""A campaign's share of the decisions (docs/decisions/0022), pure like ``decide``: which
children to start next and what each is told, what a child's end records, and the notice
a child sends its campaign when it ends. ``decide`` calls these and records the events."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from alphasaga_contracts import SagaState
from alphasaga_contracts import campaign as cp
from alphasaga_contracts import saga as sg
from alphasaga_contracts.envelope import derived_message_id
from alphasaga_saga.aggregate import Saga

RUNNING = "RUNNING"
CAMPAIGN_WORKFLOW = cp.CAMPAIGN_WORKFLOW


@dataclass(frozen=True, slots=True)
class ChildToStart:
    plan: cp.TrialPlan
    child_id: uuid.UUID
    message_id: str
    start: sg.StartResearch
    trials_before: int
    trial_sharpe_std: float | None


def is_campaign(saga: Saga) -> bool:
    return saga.workflow == cp.CAMPAIGN_WORKFLOW


def spec_of(saga: Saga) -> cp.CampaignSpec:
    return cp.CampaignSpec.model_validate(saga.context["request"])


def outcomes_of(saga: Saga) -> list[cp.TrialOutcome]:
    return [cp.TrialOutcome.model_validate(o) for o in saga.context.get("outcomes", [])]


def running(saga: Saga) -> list[str]:
    return [child for child, c in saga.children().items() if c["state"] == RUNNING]


def children_to_start(saga: Saga) -> list[ChildToStart]:
    """The next children of the grid, as many as the concurrency leaves room for, each told
    what the completed children measured so far (a child started later sees more trials;
    the report deflates every child again with the final figures)."""
    spec = spec_of(saga)
    grid = cp.trial_grid(spec)
    started = len(saga.children())
    room = spec.concurrency - len(running(saga))
    if room <= 0 or started >= len(grid):
        return []
    so_far = cp.measured(outcomes_of(saga))
    out = []
    for plan in grid[started : started + room]:
        child = cp.child_id(saga.saga_id, plan.trial)
        request = cp.child_request(spec, plan, so_far.trials, so_far.trial_sharpe_std)
        start = sg.StartResearch(
            saga_id=child, workflow_version=spec.workflow_version, request=request, parent=saga.saga_id
        )
        message_id = derived_message_id(str(saga.saga_id), "child", str(plan.trial))
        out.append(ChildToStart(plan, child, message_id, start, so_far.trials, so_far.trial_sharpe_std))
    return out


def all_started(saga: Saga) -> bool:
    return len(saga.children()) >= spec_of(saga).budget


def progress(saga: Saga) -> tuple[int, int, int]:
    """(done, running, failed): children that completed, that still run, that did not complete."""
    states = [c["state"] for c in saga.children().values()]
    done = states.count(str(SagaState.COMPLETED))
    still = states.count(RUNNING)
    return done, still, len(states) - done - still


def outcome(saga: Saga, msg: sg.ChildSagaEnded, finished: dt.datetime) -> cp.TrialOutcome:
    """What the campaign records of a child's end: its place in the grid and its out-of-sample figures."""
    trial = saga.children()[str(msg.child_id)]["trial"]
    plan = cp.trial_grid(spec_of(saga))[trial - 1]
    m = msg.metrics

    def oos(name: str) -> float | None:
        return m.get(f"out_of_sample.{name}")

    periods = oos("n_periods")
    trials = oos("trials")
    return cp.TrialOutcome(
        trial=trial,
        saga_id=msg.child_id,
        dataset=plan.dataset,
        family=plan.family,
        seed=plan.seed,
        state=msg.state,
        error=msg.error,
        accepted=msg.accepted,
        trials=None if trials is None else int(trials),
        candidates=msg.candidates,
        sharpe=oos("sharpe"),
        n_periods=None if periods is None else int(periods),
        skewness=oos("skewness"),
        kurtosis=oos("kurtosis"),
        deflated_sharpe=oos("deflated_sharpe"),
        report=msg.report,
        chart=msg.chart,
        finished=finished,
    )


def parent_of(saga: Saga) -> uuid.UUID | None:
    parent = getattr(saga, "parent", None)  # absent from sagas started before campaigns
    return None if parent is None else uuid.UUID(str(parent))


def ended_notice(saga: Saga, parent: uuid.UUID) -> sg.ChildSagaEnded:
    """The notice a child that just ended sends its campaign: its state, and when it
    completed, its verdict and out-of-sample figures and the hypotheses it chose from."""
    if saga.state != SagaState.COMPLETED:
        return sg.ChildSagaEnded(
            saga_id=parent, child_id=saga.saga_id, state=str(saga.state), error=(saga.failure or "")[:2000]
        )
    outputs: dict[str, Any] = saga.outputs
    metrics = outputs.get("metrics") or {}
    verdict = outputs.get("verdict") or {}
    hypothesis = saga.context.get("hypothesis") or {}
    return sg.ChildSagaEnded(
        saga_id=parent,
        child_id=saga.saga_id,
        state="COMPLETED",
        accepted=verdict.get("accepted"),
        candidates=int(hypothesis.get("candidates", 1)),
        metrics={k: float(v) for k, v in metrics.items() if k.startswith("out_of_sample.")},
        report=outputs.get("report"),
        chart=outputs.get("chart"),
    )


def rejected_notice(parent: uuid.UUID, child: uuid.UUID, reason: str) -> sg.ChildSagaEnded:
    return sg.ChildSagaEnded(saga_id=parent, child_id=child, state="REJECTED", error=reason[:2000])


def notice_id(child: uuid.UUID) -> str:
    return derived_message_id(str(child), "ended")


def cancel_id(campaign: uuid.UUID, child: str) -> str:
    return derived_message_id(str(campaign), "cancel", child)
