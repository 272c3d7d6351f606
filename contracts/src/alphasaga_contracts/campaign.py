"""A research campaign: many research sagas over a grid of datasets and strategy families,
run by a parent saga with bounded concurrency, each child's outcome recorded, and every
child's deflated Sharpe ratio counting the campaign's trials (docs/decisions/0022).

The trial count and the spread of the trials' Sharpe ratios are the campaign's to supply,
from what it measured: the spec has no field for them, so a caller's value is refused
(``extra="forbid"``), and each child's request carries the campaign's."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Sequence
from typing import Literal
from uuid import UUID, uuid5

from pydantic import Field, model_validator

from .deflation import PERIODS_PER_YEAR, annual_to_period_variance, deflated_sharpe
from .research import (
    BUILTIN_DATASETS,
    MAX_SEED,
    ArtifactRef,
    Constraints,
    Fill,
    Objective,
    RequestDate,
    ResearchRequest,
    StrategyFamily,
    Value,
)

MAX_BUDGET = 100  # children of one campaign: its state, its report step's command (every outcome) stay small
MAX_CONCURRENCY = 64
STRATEGY_FAMILIES: tuple[StrategyFamily, ...] = ("trend_following", "mean_reversion")
# The planner's objective that keeps a child to one family.
OBJECTIVE_OF: dict[StrategyFamily, Objective] = {"trend_following": "trend", "mean_reversion": "mean_reversion"}
CAMPAIGN_WORKFLOW = "campaign"
# A child's end as the campaign records it: a saga's terminal state, or REJECTED when the
# orchestrator refused its start.
ChildState = Literal["COMPLETED", "ROLLED_BACK", "COMPENSATION_FAILED", "REJECTED"]


class CampaignSpec(Value):
    """What a campaign runs: ``budget`` children over every (dataset, family) in turn, the
    seed going up by one each time the grid starts again, at most ``concurrency`` at once."""

    datasets: list[str] = Field(min_length=1, max_length=len(BUILTIN_DATASETS), description="Built-in datasets")
    families: list[StrategyFamily] = Field(min_length=1, max_length=len(STRATEGY_FAMILIES))
    budget: int = Field(ge=1, le=MAX_BUDGET, description="How many child sagas (trials) to run")
    concurrency: int = Field(4, ge=1, le=MAX_CONCURRENCY, description="Children running at once")
    start: RequestDate = None
    end: RequestDate = None
    constraints: Constraints = Constraints()
    commission_bps: float = Field(5.0, ge=0, le=1000)
    slippage_bps: float = Field(2.0, ge=0, le=1000)
    out_of_sample_fraction: float = Field(
        0.3, gt=0, le=0.9, description="Held out of every child; the ranking is on this period"
    )
    fill: Fill = "close"
    seed: int = Field(7, ge=0, le=MAX_SEED - MAX_BUDGET, description="The first child's seed")
    workflow_version: int | None = Field(None, ge=1, description="The children's research version")

    @model_validator(mode="after")
    def _known(self) -> CampaignSpec:
        unknown = [d for d in self.datasets if d not in BUILTIN_DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown}; built-in: {', '.join(BUILTIN_DATASETS)}")
        for name, values in (("datasets", self.datasets), ("families", list(self.families))):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} repeat: {values}")
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class TrialPlan(Value):
    """One child of the grid: its place (1-based) and what it tries."""

    trial: int = Field(ge=1)
    dataset: str
    family: StrategyFamily
    seed: int


def trial_grid(spec: CampaignSpec) -> list[TrialPlan]:
    cells = [(d, f) for d in spec.datasets for f in spec.families]
    return [
        TrialPlan(
            trial=i + 1,
            dataset=cells[i % len(cells)][0],
            family=cells[i % len(cells)][1],
            seed=spec.seed + i // len(cells),
        )
        for i in range(spec.budget)
    ]


def child_id(campaign_id: UUID, trial: int) -> UUID:
    """A child's saga id, derived from its campaign and place: deciding again starts the same one."""
    return uuid5(campaign_id, f"trial/{trial}")


def child_request(
    spec: CampaignSpec, plan: TrialPlan, trials_before: int, trial_sharpe_std: float | None
) -> ResearchRequest:
    """A child's research request. ``trials_before`` (the trials the campaign's completed
    children counted) and ``trial_sharpe_std`` (the spread of their out-of-sample Sharpe
    ratios) are what the campaign measured when it started the child."""
    return ResearchRequest(
        dataset=plan.dataset,
        start=spec.start,
        end=spec.end,
        objective=OBJECTIVE_OF[plan.family],
        constraints=spec.constraints,
        commission_bps=spec.commission_bps,
        slippage_bps=spec.slippage_bps,
        out_of_sample_fraction=spec.out_of_sample_fraction,
        fill=spec.fill,
        seed=plan.seed,
        trials=trials_before + 1,
        trial_sharpe_std=trial_sharpe_std,
    )


class TrialOutcome(Value):
    """A child's end, as its campaign records it (from the child's last outputs)."""

    trial: int = Field(ge=1)
    saga_id: UUID
    dataset: str
    family: StrategyFamily
    seed: int
    state: ChildState
    error: str | None = None
    accepted: bool | None = None
    # The child's own count: trials before it plus the hypotheses its planner chose from.
    trials: int | None = None
    candidates: int = Field(1, ge=1, description="Hypotheses the child's planner chose from: trials of its own")
    sharpe: float | None = Field(None, description="Out-of-sample Sharpe ratio, annualised")
    n_periods: int | None = None
    skewness: float | None = None
    kurtosis: float | None = None
    deflated_sharpe: float | None = Field(None, description="As the child computed it, with the trials it saw")
    report: ArtifactRef | None = None
    chart: ArtifactRef | None = None
    finished: dt.datetime | None = None


class RankedTrial(Value):
    trial: int
    saga_id: UUID
    dataset: str
    family: StrategyFamily
    seed: int
    sharpe: float
    deflated_sharpe: float = Field(description="Again at the campaign's end, with its final trials and variance")
    deflated_sharpe_when_run: float | None
    accepted: bool | None


class Measured(Value):
    """What a campaign's completed children measured: the trials they count (every
    hypothesis each planner chose from) and the spread of their out-of-sample Sharpe ratios
    (annualised; None with fewer than two, or none: then the deflated Sharpe ratio assumes
    skill-less trials)."""

    completed: int
    trials: int
    trial_sharpe_std: float | None


def measured(outcomes: Sequence[TrialOutcome]) -> Measured:
    sharpes = [o.sharpe for o in outcomes if o.state == "COMPLETED" and o.sharpe is not None]
    counted = [o for o in outcomes if o.state == "COMPLETED" and o.sharpe is not None]
    std = statistics.stdev(sharpes) if len(sharpes) >= 2 else None
    return Measured(
        completed=len(counted),
        trials=sum(o.candidates for o in counted),
        trial_sharpe_std=std if std is not None and std > 0 else None,
    )


def rank(outcomes: Sequence[TrialOutcome]) -> tuple[Measured, list[RankedTrial]]:
    """Every completed child's out-of-sample deflated Sharpe ratio again, with the final
    count of trials and their variance, best first (ties: the earlier trial)."""
    final = measured(outcomes)
    variance = None if final.trial_sharpe_std is None else annual_to_period_variance(final.trial_sharpe_std)
    ranked = []
    for o in outcomes:
        if o.state != "COMPLETED" or o.sharpe is None or o.n_periods is None:
            continue
        per_period = o.sharpe / math.sqrt(PERIODS_PER_YEAR)
        value = deflated_sharpe(
            per_period,
            o.skewness or 0.0,
            3.0 if o.kurtosis is None else o.kurtosis,
            o.n_periods,
            max(final.trials, 1),
            variance,
        )
        ranked.append(
            RankedTrial(
                trial=o.trial,
                saga_id=o.saga_id,
                dataset=o.dataset,
                family=o.family,
                seed=o.seed,
                sharpe=o.sharpe,
                deflated_sharpe=value,
                deflated_sharpe_when_run=o.deflated_sharpe,
                accepted=o.accepted,
            )
        )
    ranked.sort(key=lambda r: (-r.deflated_sharpe, r.trial))
    return final, ranked
