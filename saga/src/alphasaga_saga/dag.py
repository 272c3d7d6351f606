"""A workflow's DAG as one saga runs it: the instances of its steps (a step, or one branch
per item of a fanned-out step, ``ml[linear]``), what each waits for, and the inputs a
branch or a fan-in takes from the steps it needs. Pure functions of the definition and
of what the saga's events recorded (the items each fan-out planned, the steps completed
in order); the orchestrator decides with them and the invariant checker checks with them.

A fanned-out step that needs a step fanned out over the same list is paired with it: its
branch for an item needs that step's branch for the same item (``backtest[linear]`` needs
``ml[linear]``). Any other need on a fanned-out step is a fan-in: on all its branches, or
on the first ``first`` of them to succeed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .workflow import StepDefinition, Workflow, branch_name, split_branch

ITEM = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_ITEMS = 64

Fanned = Mapping[str, Sequence[str]]


class FanOutError(ValueError):
    """The list a step fans out over is missing or not a list of item names."""


def items_at(context: Mapping[str, Any], path: str) -> list[str]:
    """The items at ``path`` (``request.models``) in a saga's context, checked."""
    value: Any = context
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise FanOutError(f"nothing at {path!r} in the saga's context to fan out over")
        value = value[part]
    if not isinstance(value, list) or not value or len(value) > MAX_ITEMS:
        raise FanOutError(f"{path!r} is not a list of 1 to {MAX_ITEMS} items: {value!r}")
    bad = [v for v in value if not isinstance(v, str) or not ITEM.match(v)]
    if bad or len(set(value)) != len(value):
        raise FanOutError(f"{path!r} must hold distinct names (lower-case letters, digits, _ . -): {value!r}")
    return list(value)


def instances(step: StepDefinition, fanned: Fanned) -> list[str] | None:
    """The names ``step`` runs under; None while its fan-out is not planned yet."""
    if step.fan_out is None:
        return [step.name]
    items = fanned.get(step.name)
    return None if items is None else [branch_name(step.name, item) for item in items]


def all_instances(workflow: Workflow, fanned: Fanned) -> list[str] | None:
    """Every instance of every step, or None while a fan-out is not planned."""
    out: list[str] = []
    for step in workflow.steps:
        names = instances(step, fanned)
        if names is None:
            return None
        out += names
    return out


def _paired(step: StepDefinition, need: StepDefinition) -> bool:
    return step.fan_out is not None and need.fan_out is not None and step.fan_out.over == need.fan_out.over


def instance_needs(workflow: Workflow, fanned: Fanned, name: str) -> list[str]:
    """The instances ``name`` needs (all branches of a fan-in's need, planned so far)."""
    base, item = split_branch(name)
    step = workflow.step(base)
    out: list[str] = []
    for n in workflow.needs(base):
        need = workflow.step(n)
        if need.fan_out is None:
            out.append(n)
        elif item is not None and _paired(step, need):
            out.append(branch_name(n, item))
        else:
            out += instances(need, fanned) or []
    return out


def needs_met(workflow: Workflow, fanned: Fanned, done: Collection[str], name: str) -> bool:
    """Whether instance ``name`` may start: every need done (a fan-in: its ``first``)."""
    base, item = split_branch(name)
    step = workflow.step(base)
    for n in workflow.needs(base):
        need = workflow.step(n)
        if need.fan_out is None or (item is not None and _paired(step, need)):
            if (n if need.fan_out is None else branch_name(n, str(item))) not in done:
                return False
            continue
        if not _fan_in_met(step, need, fanned, done):
            return False
    return True


def _fan_in_met(step: StepDefinition, need: StepDefinition, fanned: Fanned, done: Collection[str]) -> bool:
    branches = instances(need, fanned)
    if branches is None:
        return False
    wanted = len(branches) if step.first is None else min(step.first, len(branches))
    return sum(b in done for b in branches) >= wanted


def ready_to_fan_out(workflow: Workflow, fanned: Fanned, completed: Sequence[str], step: StepDefinition) -> bool:
    """Whether fanned-out ``step`` may plan its branches: its paired needs planned, its
    other needs met."""
    done = set(completed)
    for n in workflow.needs(step.name):
        need = workflow.step(n)
        if _paired(step, need):
            if n not in fanned:
                return False
        elif need.fan_out is None:
            if n not in done:
                return False
        elif not _fan_in_met(step, need, fanned, done):
            return False
    return True


def branch_inputs(
    workflow: Workflow, fanned: Fanned, completed: Sequence[str], outputs: Mapping[str, Mapping[str, Any]], name: str
) -> dict[str, Any]:
    """What instance ``name`` takes beyond the saga's context: its item, the outputs of the
    branches it is paired with (and theirs, back along the pairing), and for a fan-in on a
    step, ``{<step>: {item: outputs}}`` of the branches it waited for."""
    base, item = split_branch(name)
    step = workflow.step(base)
    out: dict[str, Any] = {}
    if item is not None and step.fan_out is not None and step.fan_out.as_ is not None:
        out[step.fan_out.as_] = item
    for n in workflow.needs(base):
        need = workflow.step(n)
        if need.fan_out is None:
            continue
        if item is not None and _paired(step, need):
            paired = branch_name(n, item)
            out = {**branch_inputs(workflow, fanned, completed, outputs, paired), **outputs.get(paired, {}), **out}
            continue
        branches = set(instances(need, fanned) or [])
        done = [b for b in completed if b in branches]
        if step.first is not None:
            done = done[: step.first]
        out[n] = {str(split_branch(b)[1]): dict(outputs.get(b, {})) for b in done}
    return out


def ancestors(workflow: Workflow, fanned: Fanned, name: str) -> set[str]:
    """Every instance ``name`` needs, directly or through others."""
    seen: set[str] = set()
    todo = instance_needs(workflow, fanned, name)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += instance_needs(workflow, fanned, n)
    return seen
