"""Per step: a command, its success and failure replies, a compensation and its replies.

Commands declare the inputs they need as fields; a saga fills them by name from the
request and the outputs of earlier steps. Replies echo ``saga_id``, ``step`` and
``attempt`` so that the orchestrator can match them to the attempt it issued.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar, NamedTuple
from uuid import UUID

from pydantic import Field

from .envelope import Message
from .research import ArtifactRef, Hypothesis, ModelMetrics, ResearchRequest, Verdict
from .streams import Service

ErrorKind = str  # e.g. "invalid_input", "rule_violation", "sandbox_limit", "internal"


class StepMessage(Message):
    SERVICE: ClassVar[Service]
    saga_id: UUID
    step: str = Field(pattern=r"^[a-z][a-z0-9_]*$")


class StepCommand(StepMessage):
    attempt: int = Field(ge=1)


class StepSucceeded(StepMessage):
    attempt: int = Field(ge=1)


class StepFailed(StepMessage):
    attempt: int = Field(ge=1)
    error_kind: ErrorKind
    error: str
    retryable: bool = False


class CompensateStep(StepMessage):
    attempt: int = Field(1, ge=1, description="The compensation's own attempt")


class StepCompensated(StepMessage):
    attempt: int = Field(1, ge=1)


class CompensationFailed(StepMessage):
    attempt: int = Field(1, ge=1)
    error: str


ENVELOPE_FIELDS = frozenset({"saga_id", "step", "attempt"})


# --- reasoning -----------------------------------------------------------------------


class FormHypothesis(StepCommand):
    TYPE = "reasoning.FormHypothesis"
    SERVICE = Service.REASONING
    request: ResearchRequest


class HypothesisFormed(StepSucceeded):
    TYPE = "reasoning.HypothesisFormed"
    SERVICE = Service.REASONING
    hypothesis: Hypothesis
    dataset: ArtifactRef
    out_of_sample_start: dt.date | None = Field(
        None, description="First bar held out of reasoning; the backtest's verdict is taken from it on"
    )


class HypothesisFailed(StepFailed):
    TYPE = "reasoning.HypothesisFailed"
    SERVICE = Service.REASONING


class CompensateHypothesis(CompensateStep):
    TYPE = "reasoning.CompensateHypothesis"
    SERVICE = Service.REASONING


class HypothesisCompensated(StepCompensated):
    TYPE = "reasoning.HypothesisCompensated"
    SERVICE = Service.REASONING


class HypothesisCompensationFailed(CompensationFailed):
    TYPE = "reasoning.HypothesisCompensationFailed"
    SERVICE = Service.REASONING


# --- codegen -------------------------------------------------------------------------


class GenerateStrategy(StepCommand):
    TYPE = "codegen.GenerateStrategy"
    SERVICE = Service.CODEGEN
    request: ResearchRequest
    hypothesis: Hypothesis
    dataset: ArtifactRef


class StrategyGenerated(StepSucceeded):
    TYPE = "codegen.StrategyGenerated"
    SERVICE = Service.CODEGEN
    code: ArtifactRef
    signals: ArtifactRef = Field(description="Features and signal per bar, computed in the sandbox")
    sandbox: str = Field(
        description="Which sandbox ran the code: bubblewrap, namespaces or rlimits, "
        "+seccomp when it filtered system calls"
    )


class StrategyFailed(StepFailed):
    TYPE = "codegen.StrategyFailed"
    SERVICE = Service.CODEGEN


class CompensateStrategy(CompensateStep):
    TYPE = "codegen.CompensateStrategy"
    SERVICE = Service.CODEGEN


class StrategyCompensated(StepCompensated):
    TYPE = "codegen.StrategyCompensated"
    SERVICE = Service.CODEGEN


class StrategyCompensationFailed(CompensationFailed):
    TYPE = "codegen.StrategyCompensationFailed"
    SERVICE = Service.CODEGEN


# --- ml ------------------------------------------------------------------------------


class TrainModel(StepCommand):
    TYPE = "ml.TrainModel"
    SERVICE = Service.ML
    request: ResearchRequest
    hypothesis: Hypothesis
    dataset: ArtifactRef
    signals: ArtifactRef


class ModelTrained(StepSucceeded):
    TYPE = "ml.ModelTrained"
    SERVICE = Service.ML
    model: ArtifactRef
    predictions: ArtifactRef = Field(description="Out-of-sample probability per bar")
    model_metrics: ModelMetrics


class TrainingFailed(StepFailed):
    TYPE = "ml.TrainingFailed"
    SERVICE = Service.ML


class CompensateModel(CompensateStep):
    TYPE = "ml.CompensateModel"
    SERVICE = Service.ML


class ModelCompensated(StepCompensated):
    TYPE = "ml.ModelCompensated"
    SERVICE = Service.ML


class ModelCompensationFailed(CompensationFailed):
    TYPE = "ml.ModelCompensationFailed"
    SERVICE = Service.ML


# --- backtest ------------------------------------------------------------------------


class RunBacktest(StepCommand):
    TYPE = "backtest.RunBacktest"
    SERVICE = Service.BACKTEST
    request: ResearchRequest
    dataset: ArtifactRef
    signals: ArtifactRef
    predictions: ArtifactRef
    hypothesis: Hypothesis | None = Field(None, description="For the number of candidates the planner chose from")
    out_of_sample_start: dt.date | None = Field(None, description="First bar of the out-of-sample period")
    sandbox: str | None = Field(None, description="The sandbox codegen ran the strategy in, for the report")


class BacktestCompleted(StepSucceeded):
    TYPE = "backtest.BacktestCompleted"
    SERVICE = Service.BACKTEST
    report: ArtifactRef
    chart: ArtifactRef
    metrics: dict[str, float] = Field(
        description="Whole period under plain names; in_sample.* and out_of_sample.* for the two parts when "
        "the request held bars out"
    )
    verdict: Verdict


class BacktestFailed(StepFailed):
    TYPE = "backtest.BacktestFailed"
    SERVICE = Service.BACKTEST


class CompensateBacktest(CompensateStep):
    TYPE = "backtest.CompensateBacktest"
    SERVICE = Service.BACKTEST


class BacktestCompensated(StepCompensated):
    TYPE = "backtest.BacktestCompensated"
    SERVICE = Service.BACKTEST


class BacktestCompensationFailed(CompensationFailed):
    TYPE = "backtest.BacktestCompensationFailed"
    SERVICE = Service.BACKTEST


class StepTypes(NamedTuple):
    """The six messages one service's step is made of."""

    command: type[StepCommand]
    succeeded: type[StepSucceeded]
    failed: type[StepFailed]
    compensate: type[CompensateStep]
    compensated: type[StepCompensated]
    compensation_failed: type[CompensationFailed]


STEP_TYPES: dict[Service, StepTypes] = {
    Service.REASONING: StepTypes(
        FormHypothesis,
        HypothesisFormed,
        HypothesisFailed,
        CompensateHypothesis,
        HypothesisCompensated,
        HypothesisCompensationFailed,
    ),
    Service.CODEGEN: StepTypes(
        GenerateStrategy,
        StrategyGenerated,
        StrategyFailed,
        CompensateStrategy,
        StrategyCompensated,
        StrategyCompensationFailed,
    ),
    Service.ML: StepTypes(
        TrainModel, ModelTrained, TrainingFailed, CompensateModel, ModelCompensated, ModelCompensationFailed
    ),
    Service.BACKTEST: StepTypes(
        RunBacktest,
        BacktestCompleted,
        BacktestFailed,
        CompensateBacktest,
        BacktestCompensated,
        BacktestCompensationFailed,
    ),
}
