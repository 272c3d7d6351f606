"""Workflow definitions are data: an ordered list of steps, each with its service,
command, replies, compensation, timeout and retry policy. A saga records the
definition's version when it starts and finishes on that version."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from alphasaga_contracts import Service
from alphasaga_contracts import steps as s
from alphasaga_contracts.steps import STEP_TYPES


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


def step(
    name: str,
    service: Service,
    timeout_s: float,
    *,
    retry: RetryPolicy | None = None,
    compensation_retry: RetryPolicy | None = None,
) -> StepDefinition:
    t = STEP_TYPES[service]
    return StepDefinition(
        name,
        service,
        t.command,
        t.succeeded,
        t.failed,
        t.compensate,
        t.compensated,
        t.compensation_failed,
        timeout_s=timeout_s,
        retry=retry or RetryPolicy(),
        compensation_retry=compensation_retry or RetryPolicy(max_attempts=5),
    )


REASONING = step("reasoning", Service.REASONING, 300)
CODEGEN = step("codegen", Service.CODEGEN, 300)
ML = step("ml", Service.ML, 900)
BACKTEST = step("backtest", Service.BACKTEST, 300)

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

    def all(self) -> list[Workflow]:
        return sorted(self._by_key.values(), key=lambda w: (w.name, w.version))


DEFAULT_WORKFLOWS = WorkflowRegistry(RESEARCH_V1)


class WorkflowFileError(ValueError):
    pass


def _policy(raw: dict[str, Any] | None, default: RetryPolicy) -> RetryPolicy:
    if not raw:
        return default
    known = {f.name for f in fields(RetryPolicy)}
    unknown = set(raw) - known
    if unknown:
        raise WorkflowFileError(f"unknown retry setting(s): {', '.join(sorted(unknown))}")
    values = dict(raw)
    if "non_retryable" in values:
        values["non_retryable"] = frozenset(values["non_retryable"])
    return RetryPolicy(**{**{f.name: getattr(default, f.name) for f in fields(RetryPolicy)}, **values})


def parse_workflows(document: dict[str, Any]) -> WorkflowRegistry:
    """Workflows from a document such as ``workflows.example.yaml``."""
    workflows: list[Workflow] = []
    for w in document.get("workflows") or []:
        steps: list[StepDefinition] = []
        for raw in w.get("steps") or []:
            try:
                service = Service(raw["service"])
            except (KeyError, ValueError):
                raise WorkflowFileError(f"step {raw.get('name')!r}: unknown service {raw.get('service')!r}") from None
            if service not in STEP_TYPES:
                raise WorkflowFileError(f"step {raw.get('name')!r}: {service} runs no saga step")
            steps.append(
                step(
                    str(raw.get("name", service.value)),
                    service,
                    float(raw.get("timeout_s", 600.0)),
                    retry=_policy(raw.get("retry"), RetryPolicy()),
                    compensation_retry=_policy(raw.get("compensation_retry"), RetryPolicy(max_attempts=5)),
                )
            )
        if not steps:
            raise WorkflowFileError(f"workflow {w.get('name')!r} v{w.get('version')} has no steps")
        workflows.append(Workflow(str(w["name"]), int(w["version"]), tuple(steps)))
    if not workflows:
        raise WorkflowFileError("no workflows defined")
    return WorkflowRegistry(*workflows)


def load_workflows(path: Path | None) -> WorkflowRegistry:
    """The workflows in ``path`` (``ALPHASAGA_WORKFLOWS``), or the built-in ones."""
    if path is None:
        return DEFAULT_WORKFLOWS
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise WorkflowFileError(f"cannot read workflows from {path}: {exc}") from None
    return parse_workflows(document or {})
