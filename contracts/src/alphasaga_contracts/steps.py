"""The services, the step kinds they host, and the messages a saga step is made of.

A **step kind** is what a step does: form a hypothesis, run a backtest. It is a typed
command and a typed success reply (its result), declared here, and a ``run`` and an
``undo`` that a worker of the **service** hosting it registers
(``alphasaga_shared.worker.KindHandlers``). A service hosts one or more kinds; a
workflow's steps name kinds, not services.

Failure and compensation are the same for every kind: ``StepFailed``,
``CompensateStep``, ``StepCompensated`` and ``CompensationFailed`` carry the kind's name.
Replies echo ``saga_id``, ``step`` and ``attempt`` so that the orchestrator can match
them to the attempt it issued. Commands declare the inputs they need as fields; a saga
fills them by name from the request and the outputs of earlier steps.

``Service`` and ``KINDS`` below are the one list of services and kinds: the orchestrator,
the workers, the local stack, the images, the manifests and the test harness all take
theirs from it (docs/extending.md).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import Field

from .campaign import CampaignSpec, RankedTrial, TrialOutcome
from .envelope import Message, register_alias
from .research import ArtifactRef, Hypothesis, ModelKind, ModelMetrics, ResearchRequest, Value, Verdict

ErrorKind = str  # e.g. "invalid_input", "rule_violation", "sandbox_limit", "internal"
NAME = r"^[a-z][a-z0-9_]*$"  # of a step, a kind or a service
# A step in a saga: its name, and for a branch of a fanned-out step the item in brackets.
STEP = r"^[a-z][a-z0-9_]*(\[[a-z0-9][a-z0-9_.-]{0,63}\])?$"


class Service(StrEnum):
    """Every service: the orchestrator, and the workers, each hosting the kinds ``KINDS``
    gives it. (The HTTP API is a front end, not a service: it never reads a stream.)"""

    ORCHESTRATOR = "orchestrator"
    REASONING = "reasoning"
    CODEGEN = "codegen"
    ML = "ml"
    BACKTEST = "backtest"


class StepMessage(Message):
    saga_id: UUID
    step: str = Field(pattern=STEP, description="The step, or a fanned-out step's branch: ml[linear]")


class StepCommand(StepMessage):
    """A kind's command; a subclass per kind adds the inputs it needs."""

    attempt: int = Field(ge=1)
    deadline: dt.datetime | None = Field(
        None,
        description="When the saga stops waiting for this attempt; a worker waits out an outage until then",
    )


class StepSucceeded(StepMessage):
    """A kind's result; a subclass per kind adds its outputs, which later steps take by name."""

    attempt: int = Field(ge=1)


class StepFailed(StepMessage):
    """An attempt of a step failed; its ``retryable`` and the workflow's retry policy say
    whether another attempt follows."""

    TYPE = "steps.StepFailed"
    kind: str = Field(pattern=NAME)
    attempt: int = Field(ge=1)
    error_kind: ErrorKind
    error: str
    retryable: bool = False


class CompensateStep(StepMessage):
    """Undo what a step of ``kind`` did: idempotent, and harmless for a step that did nothing."""

    TYPE = "steps.CompensateStep"
    kind: str = Field(pattern=NAME)
    attempt: int = Field(1, ge=1, description="The compensation's own attempt")
    deadline: dt.datetime | None = Field(
        None, description="When the saga stops waiting for this compensation; a worker waits out an outage until then"
    )


class StepCompensated(StepMessage):
    TYPE = "steps.StepCompensated"
    kind: str = Field(pattern=NAME)
    attempt: int = Field(1, ge=1)


class CompensationFailed(StepMessage):
    TYPE = "steps.CompensationFailed"
    kind: str = Field(pattern=NAME)
    attempt: int = Field(1, ge=1)
    error: str


ENVELOPE_FIELDS = frozenset({"saga_id", "step", "attempt", "deadline"})


# --- the registry: a kind is declared once, beside its messages (below) ---------------

C = TypeVar("C", bound=StepCommand)
R = TypeVar("R", bound=StepSucceeded)


@dataclass(frozen=True, slots=True)
class StepKind(Generic[C, R]):
    """What a step does: its command and its result, the service that hosts it, and its
    command stream: the service's own (``own_stream=False``, the default: it scales with
    the service's other kinds) or one of its own, ``cmd:<service>.<kind>`` (it scales apart)."""

    name: str
    service: Service
    command: type[C]
    result: type[R]
    own_stream: bool = False

    @property
    def queue(self) -> str:
        """The owner part of its command stream's name (``Streams.commands``); the consumer
        group on it is the service's name."""
        return f"{self.service}.{self.name}" if self.own_stream else str(self.service)


class StepKinds:
    """The step kinds, by name: ``KINDS``, where a kind is declared once, beside its messages."""

    def __init__(self) -> None:
        self._by_name: dict[str, StepKind[Any, Any]] = {}
        self._by_command: dict[type[Message], StepKind[Any, Any]] = {}
        self._by_result: dict[type[Message], StepKind[Any, Any]] = {}

    def add(self, kind: StepKind[C, R]) -> StepKind[C, R]:
        problem = self._problem(kind)
        if problem is not None:
            raise ValueError(f"step kind {kind.name!r}: {problem}")
        self._by_name[kind.name] = kind
        self._by_command[kind.command] = kind
        self._by_result[kind.result] = kind
        return kind

    def _problem(self, kind: StepKind[Any, Any]) -> str | None:
        if not re.fullmatch(NAME, kind.name):
            return "a name is lower-case letters, digits and _, starting with a letter"
        if kind.name in self._by_name:
            return "declared twice"
        if kind.service not in set(Service) - {Service.ORCHESTRATOR}:
            return f"{kind.service!r} is not a worker service"
        for cls in (kind.command, kind.result):
            if not cls.TYPE.startswith(f"{kind.service}."):
                return f"the type of {cls.__name__} ({cls.TYPE!r}) does not start with its service, {kind.service}."
        if kind.command in self._by_command or kind.result in self._by_result:
            return "its command or its result is another kind's"
        return None

    def __getitem__(self, name: str) -> StepKind[Any, Any]:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no step kind {name!r} (known: {', '.join(self._by_name)})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[StepKind[Any, Any]]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def of_command(self, command: type[Message]) -> StepKind[Any, Any] | None:
        return self._by_command.get(command)

    def of_result(self, result: type[Message]) -> StepKind[Any, Any] | None:
        return self._by_result.get(result)

    def hosted_by(self, service: str) -> tuple[StepKind[Any, Any], ...]:
        return tuple(k for k in self if k.service == service)

    def services(self) -> tuple[Service, ...]:
        """The worker services, in the order their first kind was declared."""
        return tuple(dict.fromkeys(k.service for k in self))

    def queues(self, service: str | None = None) -> tuple[str, ...]:
        """The command streams' owners (all, or one service's), each once."""
        return tuple(dict.fromkeys(k.queue for k in self if service is None or k.service == service))


KINDS = StepKinds()


# --- kind reasoning, in service reasoning ----------------------------------------------


class FormHypothesis(StepCommand):
    TYPE = "reasoning.FormHypothesis"
    request: ResearchRequest


class HypothesisFormed(StepSucceeded):
    TYPE = "reasoning.HypothesisFormed"
    hypothesis: Hypothesis
    dataset: ArtifactRef
    out_of_sample_start: dt.date | None = Field(
        None, description="First bar held out of reasoning; the backtest's verdict is taken from it on"
    )


REASONING = KINDS.add(StepKind("reasoning", Service.REASONING, FormHypothesis, HypothesisFormed))


# --- kind codegen, in service codegen --------------------------------------------------


class GenerateStrategy(StepCommand):
    TYPE = "codegen.GenerateStrategy"
    request: ResearchRequest
    hypothesis: Hypothesis
    dataset: ArtifactRef


class StrategyGenerated(StepSucceeded):
    TYPE = "codegen.StrategyGenerated"
    code: ArtifactRef
    signals: ArtifactRef = Field(description="Features and signal per bar, computed in the sandbox")
    sandbox: str = Field(
        description="Which sandbox ran the code: bubblewrap, namespaces or rlimits, "
        "+seccomp when it filtered system calls"
    )


CODEGEN = KINDS.add(StepKind("codegen", Service.CODEGEN, GenerateStrategy, StrategyGenerated))


# --- kind ml, in service ml ------------------------------------------------------------


class TrainModel(StepCommand):
    TYPE = "ml.TrainModel"
    request: ResearchRequest
    hypothesis: Hypothesis
    dataset: ArtifactRef
    signals: ArtifactRef
    model_kind: ModelKind = Field("lightgbm", description="What to train, each walk-forward in the same way")


class ModelTrained(StepSucceeded):
    TYPE = "ml.ModelTrained"
    model: ArtifactRef
    predictions: ArtifactRef = Field(description="Out-of-sample probability per bar")
    model_metrics: ModelMetrics


ML = KINDS.add(StepKind("ml", Service.ML, TrainModel, ModelTrained))


# --- kind backtest, in service backtest ------------------------------------------------


class RunBacktest(StepCommand):
    TYPE = "backtest.RunBacktest"
    request: ResearchRequest
    dataset: ArtifactRef
    signals: ArtifactRef
    predictions: ArtifactRef
    hypothesis: Hypothesis | None = Field(None, description="For the number of candidates the planner chose from")
    out_of_sample_start: dt.date | None = Field(None, description="First bar of the out-of-sample period")
    sandbox: str | None = Field(None, description="The sandbox codegen ran the strategy in, for the report")


class BacktestCompleted(StepSucceeded):
    TYPE = "backtest.BacktestCompleted"
    report: ArtifactRef
    chart: ArtifactRef
    metrics: dict[str, float] = Field(
        description="Whole period under plain names; in_sample.* and out_of_sample.* for the two parts when "
        "the request held bars out"
    )
    verdict: Verdict


BACKTEST = KINDS.add(StepKind("backtest", Service.BACKTEST, RunBacktest, BacktestCompleted))


# --- kind select, in service backtest ----------------------------------------------------


class BacktestOutcome(Value):
    """A backtest branch's outputs, as a fan-in receives them."""

    report: ArtifactRef
    chart: ArtifactRef
    metrics: dict[str, float]
    verdict: Verdict


class SelectModel(StepCommand):
    """Choose the best of the backtests a fan-in waited for, by out-of-sample deflated Sharpe."""

    TYPE = "backtest.SelectModel"
    request: ResearchRequest
    backtest: dict[str, BacktestOutcome] = Field(min_length=1, description="Each branch's item -> its backtest")


class ModelSelected(StepSucceeded):
    TYPE = "backtest.ModelSelected"
    selected: str = Field(description="The branch chosen (its item, e.g. linear)")
    criterion: str = Field(description="The metric it was chosen by, e.g. out_of_sample.deflated_sharpe")
    compared: dict[str, float] = Field(description="Each branch's value of the criterion")
    report: ArtifactRef
    chart: ArtifactRef
    metrics: dict[str, float]
    verdict: Verdict


SELECT = KINDS.add(StepKind("select", Service.BACKTEST, SelectModel, ModelSelected))


# --- kind campaign_report, in service backtest -----------------------------------------


class ReportCampaign(StepCommand):
    """A campaign's report, once every child has ended: each child's deflated Sharpe again
    with the campaign's final trials and their variance, the ranking by it, a table and
    two charts (out-of-sample Sharpe by trial, the top five's equity)."""

    TYPE = "backtest.ReportCampaign"
    request: CampaignSpec
    outcomes: list[TrialOutcome] = Field(description="Every child's end, in the order they ended")


class CampaignReported(StepSucceeded):
    TYPE = "backtest.CampaignReported"
    table: ArtifactRef = Field(description="CSV: every child, ranked")
    chart: ArtifactRef = Field(description="PNG: out-of-sample Sharpe against trial number")
    equity: ArtifactRef = Field(description="PNG: out-of-sample equity of the top five")
    trials: int = Field(description="The trials the verdicts count: the completed children's hypotheses")
    trial_sharpe_std: float | None = Field(description="Spread of the completed children's out-of-sample Sharpe")
    ranking: list[RankedTrial]


CAMPAIGN_REPORT = KINDS.add(StepKind("campaign_report", Service.BACKTEST, ReportCampaign, CampaignReported))

# --- former type names ---------------------------------------------------------------

# Until the generic messages above, each kind had its own four (main before issue #22).
# Entries with those names may still wait in streams or dead-letter streams after an
# upgrade, and the event store's outbox rows keep them: they read as the generic message,
# with the kind their name meant. Nothing sends them any more.
_FORMER_NAMES = {  # kind: its failed, compensate, compensated and compensation-failed types
    "reasoning": ("HypothesisFailed", "CompensateHypothesis", "HypothesisCompensated", "HypothesisCompensationFailed"),
    "codegen": ("StrategyFailed", "CompensateStrategy", "StrategyCompensated", "StrategyCompensationFailed"),
    "ml": ("TrainingFailed", "CompensateModel", "ModelCompensated", "ModelCompensationFailed"),
    "backtest": ("BacktestFailed", "CompensateBacktest", "BacktestCompensated", "BacktestCompensationFailed"),
}
_GENERIC: tuple[type[StepMessage], ...] = (StepFailed, CompensateStep, StepCompensated, CompensationFailed)
FORMER_TYPES: dict[str, tuple[type[StepMessage], str]] = {
    f"{kind}.{name}": (generic, kind)
    for kind, names in _FORMER_NAMES.items()
    for generic, name in zip(_GENERIC, names, strict=True)
}
"""Former type name -> (the generic message it reads as, the kind it names)."""


def _former_class(type_name: str) -> type[Message]:
    """A subclass of the generic message whose ``kind`` defaults to the one the name meant
    (built on first use: most processes never meet one)."""
    generic, kind = FORMER_TYPES[type_name]

    def fill(namespace: dict[str, Any]) -> None:
        namespace.update(
            {
                "__module__": __name__,
                "__annotations__": {"kind": Literal[kind]},
                "kind": kind,
                "TYPE": type_name,
                "ALIAS_OF": generic.TYPE,
            }
        )

    return types.new_class(type_name.split(".", 1)[1], (generic,), {}, fill)


for _name in FORMER_TYPES:
    register_alias(_name, functools.partial(_former_class, _name))
