"""Workflow definitions are data: an ordered list of steps, each naming its step kind
(which fixes its command, its result and the stream its commands go to) with its timeout
and retry policies. The built-in ones are ``workflows.yaml`` beside this module, the one
source of every copy (``BUILT_IN``). A saga records the definition's version when it
starts and finishes on that version."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from alphasaga_contracts import steps as st
from alphasaga_contracts.steps import KINDS, Service, StepKind

BUILT_IN = Path(__file__).with_name("workflows.yaml")


class WorkflowSettings(BaseSettings):
    """Where the workflow definitions come from: the orchestrator runs sagas on them, a
    front end shows a saga's steps from them."""

    model_config = SettingsConfigDict(env_prefix="ALPHASAGA_", extra="ignore")

    workflows: Path | None = Field(None, description="A YAML file of workflow definitions")


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
    kind: StepKind[Any, Any]
    timeout_s: float = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    compensation_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=5))
    # Taken from the kind once, not for every command sent: the owner of its command
    # stream, and the command's fields that a saga fills from its context.
    queue: str = field(init=False, compare=False)
    inputs: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "queue", self.kind.queue)
        inputs = tuple(f for f in self.kind.command.model_fields if f not in st.ENVELOPE_FIELDS)
        object.__setattr__(self, "inputs", inputs)

    @property
    def service(self) -> Service:
        return self.kind.service

    @property
    def command(self) -> type[st.StepCommand]:
        return self.kind.command

    @property
    def succeeded(self) -> type[st.StepSucceeded]:
        return self.kind.result

    def command_inputs(self) -> list[str]:
        """The command's fields that a saga fills from its context."""
        return list(self.inputs)


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    version: int
    steps: tuple[StepDefinition, ...]

    def step(self, name: str) -> StepDefinition:
        for candidate in self.steps:
            if candidate.name == name:
                return candidate
        raise KeyError(f"workflow {self.name} v{self.version} has no step {name!r}")

    def index(self, name: str) -> int:
        return [candidate.name for candidate in self.steps].index(name)


def step(
    name: str,
    kind: StepKind[Any, Any],
    timeout_s: float,
    *,
    retry: RetryPolicy | None = None,
    compensation_retry: RetryPolicy | None = None,
) -> StepDefinition:
    return StepDefinition(
        name,
        kind,
        timeout_s=timeout_s,
        retry=retry or RetryPolicy(),
        compensation_retry=compensation_retry or RetryPolicy(max_attempts=5),
    )


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


def _kind_of(raw: dict[str, Any]) -> StepKind[Any, Any]:
    """The step's kind: ``kind:``, or, as files said before step kinds, ``service:`` for the
    one kind that service hosts."""
    name, service = raw.get("name"), raw.get("service")
    if "kind" in raw:
        try:
            kind = KINDS[str(raw["kind"])]
        except KeyError as exc:
            raise WorkflowFileError(f"step {name!r}: {exc.args[0]}") from None
        if service is not None and service != kind.service:
            raise WorkflowFileError(f"step {name!r}: kind {kind.name} runs in {kind.service}, not {service}")
        return kind
    if service not in [s.value for s in Service]:
        raise WorkflowFileError(f"step {name!r}: unknown service {service!r} (and no kind)")
    hosted = KINDS.hosted_by(str(service))
    if len(hosted) != 1:
        what = "runs no saga step" if not hosted else f"hosts several kinds ({', '.join(k.name for k in hosted)})"
        raise WorkflowFileError(f"step {name!r}: {service} {what}: name the step's kind")
    return hosted[0]


def _parse_step(raw: dict[str, Any]) -> StepDefinition:
    kind = _kind_of(raw)
    return step(
        str(raw.get("name", kind.name)),
        kind,
        float(raw.get("timeout_s", 600.0)),
        retry=_policy(raw.get("retry"), RetryPolicy()),
        compensation_retry=_policy(raw.get("compensation_retry"), RetryPolicy(max_attempts=5)),
    )


def parse_workflows(document: dict[str, Any]) -> WorkflowRegistry:
    """Workflows from a document such as ``workflows.yaml``."""
    workflows: list[Workflow] = []
    for w in document.get("workflows") or []:
        steps = tuple(_parse_step(raw) for raw in w.get("steps") or [])
        if not steps:
            raise WorkflowFileError(f"workflow {w.get('name')!r} v{w.get('version')} has no steps")
        workflows.append(Workflow(str(w["name"]), int(w["version"]), steps))
    if not workflows:
        raise WorkflowFileError("no workflows defined")
    return WorkflowRegistry(*workflows)


def read_workflows(path: Path) -> WorkflowRegistry:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise WorkflowFileError(f"cannot read workflows from {path}: {exc}") from None
    return parse_workflows(document or {})


DEFAULT_WORKFLOWS = read_workflows(BUILT_IN)
RESEARCH_V1 = DEFAULT_WORKFLOWS.get("research", 1)


def load_workflows(path: Path | None) -> WorkflowRegistry:
    """The workflows in ``path`` (``ALPHASAGA_WORKFLOWS``), or the built-in ones."""
    return DEFAULT_WORKFLOWS if path is None else read_workflows(path)
