"""Workflow definitions are data: an ordered list of steps, each with its service,
command, replies, compensation, timeout and retry policy. A saga records the
definition's version when it starts and finishes on that version."""

from __future__ import annotations

from dataclasses import dataclass, field

from alphasaga_contracts import Service
from alphasaga_contracts import steps as s


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_s: float = 0.5
    backoff_multiplier: float = 2.0
    max_backoff_s: float = 30.0
    jitter: float = 0.2
    non_retryable: frozenset[str] = frozenset({"invalid_input", "rule_violation"})


@dataclass(frozen=True, slots=True)
class StepDefinition:
    name: str
    service: Service
    command: type[s.StepCommand]
    succeeded: type[s.StepSucceeded]
    failed: type[s.StepFailed]
    compensate: type[s.CompensateStep]
    compensated: type[s.StepCompensated]
    compensation_failed: type[s.CompensationFailed]
    timeout_s: float = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    compensation_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=5))

    def command_inputs(self) -> list[str]:
        """The command's fields that a saga fills from its context."""
        return [f for f in self.command.model_fields if f not in s.ENVELOPE_FIELDS]


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    version: int
    steps: tuple[StepDefinition, ...]

    def step(self, name: str) -> StepDefinition:
        for st in self.steps:
            if st.name == name:
                return st
        raise KeyError(f"workflow {self.name} v{self.version} has no step {name!r}")

    def index(self, name: str) -> int:
        return [st.name for st in self.steps].index(name)


REASONING = StepDefinition(
    "reasoning",
    Service.REASONING,
    s.FormHypothesis,
    s.HypothesisFormed,
    s.HypothesisFailed,
    s.CompensateHypothesis,
    s.HypothesisCompensated,
    s.HypothesisCompensationFailed,
    timeout_s=300,
)
CODEGEN = StepDefinition(
    "codegen",
    Service.CODEGEN,
    s.GenerateStrategy,
    s.StrategyGenerated,
    s.StrategyFailed,
    s.CompensateStrategy,
    s.StrategyCompensated,
    s.StrategyCompensationFailed,
    timeout_s=300,
)
ML = StepDefinition(
    "ml",
    Service.ML,
    s.TrainModel,
    s.ModelTrained,
    s.TrainingFailed,
    s.CompensateModel,
    s.ModelCompensated,
    s.ModelCompensationFailed,
    timeout_s=900,
)
BACKTEST = StepDefinition(
    "backtest",
    Service.BACKTEST,
    s.RunBacktest,
    s.BacktestCompleted,
    s.BacktestFailed,
    s.CompensateBacktest,
    s.BacktestCompensated,
    s.BacktestCompensationFailed,
    timeout_s=300,
)

RESEARCH_V1 = Workflow("research", 1, (REASONING, CODEGEN, ML, BACKTEST))


class WorkflowRegistry:
    def __init__(self, *workflows: Workflow) -> None:
        self._by_key = {(w.name, w.version): w for w in workflows}

    def get(self, name: str, version: int) -> Workflow:
        try:
            return self._by_key[(name, version)]
        except KeyError:
            raise KeyError(f"unknown workflow {name} v{version}") from None

    def latest(self, name: str) -> Workflow:
        versions = [w for (n, _), w in self._by_key.items() if n == name]
        if not versions:
            raise KeyError(f"unknown workflow {name!r}")
        return max(versions, key=lambda w: w.version)


DEFAULT_WORKFLOWS = WorkflowRegistry(RESEARCH_V1)
