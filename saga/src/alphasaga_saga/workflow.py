"""Workflow definitions are data: a DAG of steps, each naming its step kind (which fixes
its command, its result and the stream its commands go to) with its timeout and retry
policies, the steps it ``needs``, and optionally a fan-out over a list in the saga's
context (one branch per item) or a fan-in on the first ``k`` branches of what it needs.
A step that says nothing of its needs needs the step before it, so a linear workflow is
a chain (docs/decisions/0015). The built-in ones are ``workflows.yaml`` beside this
module, the one source of every copy (``BUILT_IN``). A saga records the definition's
version when it starts and finishes on that version."""

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
class FanOut:
    """One branch of a step per item of a list in the saga's context: ``over`` is its path
    there (``request.models``), ``as_`` the command input each branch gets its item in
    (None: the item only names the branch, ``ml[linear]``)."""

    over: str
    as_: str | None = None


@dataclass(frozen=True, slots=True)
class StepDefinition:
    name: str
    kind: StepKind[Any, Any]
    timeout_s: float = 600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    compensation_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=5))
    # None: the step before (a chain); () : none, the step starts with the saga.
    needs: tuple[str, ...] | None = None
    fan_out: FanOut | None = None
    # A fan-in on a fanned-out need starts after its first ``first`` branches succeeded
    # (None: all of them).
    first: int | None = None
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
    # A preview version is started only when a request names it; the default is the
    # newest version that is not one.
    preview: bool = False
    _needs: dict[str, tuple[str, ...]] = field(init=False, compare=False, repr=False)
    _by_name: dict[str, StepDefinition] = field(init=False, compare=False, repr=False)
    _branchy: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.steps})
        needs: dict[str, tuple[str, ...]] = {}
        for i, s in enumerate(self.steps):
            needs[s.name] = s.needs if s.needs is not None else ((self.steps[i - 1].name,) if i else ())
        object.__setattr__(self, "_needs", needs)
        branchy = {
            s.name
            for s in self.steps
            if s.fan_out is not None
            or any(self._by_name[n].fan_out is not None for n in needs[s.name] if n in self._by_name)
        }
        object.__setattr__(self, "_branchy", frozenset(branchy))
        problem = _dag_problem(self)
        if problem is not None:
            raise WorkflowFileError(f"workflow {self.name} v{self.version}: {problem}")

    def step(self, name: str) -> StepDefinition:
        """The definition of step ``name``, or of the step a branch (``ml[linear]``) is of."""
        found = self._by_name.get(name) or self._by_name.get(split_branch(name)[0])
        if found is None:
            raise KeyError(f"workflow {self.name} v{self.version} has no step {name!r}")
        return found

    def index(self, name: str) -> int:
        return [candidate.name for candidate in self.steps].index(name)

    def needs(self, name: str) -> tuple[str, ...]:
        """The steps ``name`` needs, as declared (or the step before it)."""
        found = self._needs.get(name)
        return found if found is not None else self._needs[split_branch(name)[0]]

    def order(self, names: set[str] | frozenset[str]) -> list[str]:
        """``names`` in the order the definition lists them."""
        return [s.name for s in self.steps if s.name in names]

    def takes_branches(self, name: str) -> bool:
        """Whether step ``name`` fans out or needs a step that does (its inputs then come
        from branches too, ``dag.branch_inputs``)."""
        return split_branch(name)[0] in self._branchy

    def is_chain(self) -> bool:
        return all(s.fan_out is None for s in self.steps) and all(
            self._needs[s.name] == ((self.steps[i - 1].name,) if i else ()) for i, s in enumerate(self.steps)
        )


def branch_name(step: str, item: str) -> str:
    return f"{step}[{item}]"


def split_branch(name: str) -> tuple[str, str | None]:
    """``ml[linear]`` -> (``ml``, ``linear``); ``codegen`` -> (``codegen``, None)."""
    if name.endswith("]") and "[" in name:
        base, _, item = name[:-1].partition("[")
        return base, item
    return name, None


# Complexity 11: one rule per way a definition can be wrong, each with its own message.
def _dag_problem(workflow: Workflow) -> str | None:
    """Why the steps do not make a DAG that can run, or None."""
    names = [s.name for s in workflow.steps]
    if len(set(names)) != len(names):
        return f"step names repeat: {names}"
    seen: set[str] = set()
    for s in workflow.steps:
        needs = workflow.needs(s.name)
        unknown = [n for n in needs if n not in names]
        if unknown:
            return f"step {s.name!r} needs unknown step(s) {unknown}"
        later = [n for n in needs if n not in seen]
        if later:  # steps are listed in an order their needs allow, so no cycle can form
            return f"step {s.name!r} needs {later}, listed after it (or itself)"
        if s.first is not None:
            fanned = [n for n in needs if workflow.step(n).fan_out is not None]
            if s.first < 1 or not fanned:
                return f"step {s.name!r}: first: {s.first} needs a fanned-out step to wait for and k >= 1"
        if s.fan_out is not None and s.fan_out.as_ is not None and s.fan_out.as_ not in s.inputs:
            return f"step {s.name!r}: its command has no input {s.fan_out.as_!r} to put each item in"
        seen.add(s.name)
    return None


def step(
    name: str,
    kind: StepKind[Any, Any],
    timeout_s: float,
    *,
    retry: RetryPolicy | None = None,
    compensation_retry: RetryPolicy | None = None,
    needs: tuple[str, ...] | None = None,
    fan_out: FanOut | None = None,
    first: int | None = None,
) -> StepDefinition:
    return StepDefinition(
        name,
        kind,
        timeout_s=timeout_s,
        retry=retry or RetryPolicy(),
        compensation_retry=compensation_retry or RetryPolicy(max_attempts=5),
        needs=needs,
        fan_out=fan_out,
        first=first,
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
        """The version a request that names none starts: the newest that is not a preview."""
        versions = [w for (n, _), w in self._by_key.items() if n == name and not w.preview]
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


_STEP_KEYS = {"name", "kind", "service", "timeout_s", "retry", "compensation_retry", "needs", "for_each", "first"}


def _fan_out(name: str, raw: Any) -> FanOut | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("in"), str) or set(raw) - {"in", "as"}:
        raise WorkflowFileError(f"step {name!r}: for_each is {{in: <path in the context>, as: <command input>}}")
    return FanOut(raw["in"], None if raw.get("as") is None else str(raw["as"]))


def _parse_step(raw: dict[str, Any]) -> StepDefinition:
    kind = _kind_of(raw)
    name = str(raw.get("name", kind.name))
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        raise WorkflowFileError(f"step {name!r}: unknown setting(s) {', '.join(sorted(unknown))}")
    needs = raw.get("needs")
    if needs is not None and (not isinstance(needs, list) or not all(isinstance(n, str) for n in needs)):
        raise WorkflowFileError(f"step {name!r}: needs is a list of step names")
    return step(
        name,
        kind,
        float(raw.get("timeout_s", 600.0)),
        retry=_policy(raw.get("retry"), RetryPolicy()),
        compensation_retry=_policy(raw.get("compensation_retry"), RetryPolicy(max_attempts=5)),
        needs=None if needs is None else tuple(needs),
        fan_out=_fan_out(name, raw.get("for_each")),
        first=None if raw.get("first") is None else int(raw["first"]),
    )


def parse_workflows(document: dict[str, Any]) -> WorkflowRegistry:
    """Workflows from a document such as ``workflows.yaml``."""
    workflows: list[Workflow] = []
    for w in document.get("workflows") or []:
        steps = tuple(_parse_step(raw) for raw in w.get("steps") or [])
        if not steps:
            raise WorkflowFileError(f"workflow {w.get('name')!r} v{w.get('version')} has no steps")
        workflows.append(Workflow(str(w["name"]), int(w["version"]), steps, preview=bool(w.get("preview", False))))
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
