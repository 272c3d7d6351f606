"""Two sagas side by side (``alphasaga diff A B``): the first event where their logs part,
and, step by step, the inputs, outputs and metrics that differ.

Events are compared by what they say about the work, not by what makes each one unique
(ids, times, deadlines, message ids); a step command is compared with the inputs it was
sent (its outbox row). A fork's ``StepsReused`` stands for the source's events of the
steps it reused: they are the same work, so both are left out of the comparison, which
then starts where the fork ran on its own. Pure: rows in, a ``RunDiff`` out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alphasaga_shared.eventstore import RecordedEvent

from .timetravel import ABSENT, Change, diff, event_name, readable

# What varies between any two runs of the same work.
_NOT_THE_WORK = frozenset(
    {
        "timestamp",
        "originator_id",
        "originator_version",
        "originator_topic",
        "message_id",
        "due_at",
        "forked_from",
        "saga_id",
        "traceparent",
    }
)
# A command's deadline is its timeout's due time (issue #31): when, not what.
_ENVELOPE = frozenset({"saga_id", "step", "attempt", "deadline"})


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first event (1-based, in each saga's own log) where the logs part; a side is
    None when its log ended first."""

    a_number: int | None
    b_number: int | None
    a_event: str | None
    b_event: str | None
    changes: list[Change]

    def as_json(self) -> dict[str, Any]:
        return {
            "a": {"number": self.a_number, "event": self.a_event},
            "b": {"number": self.b_number, "event": self.b_event},
            "changes": [c.as_json() for c in self.changes],
        }


@dataclass(frozen=True, slots=True)
class StepDiff:
    step: str
    inputs: list[Change] = field(default_factory=list)
    outputs: list[Change] = field(default_factory=list)
    metrics: list[Change] = field(default_factory=list)
    only_in: str | None = None  # "a" or "b" when the other saga never ran the step

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "only_in": self.only_in,
            "inputs": [c.as_json() for c in self.inputs],
            "outputs": [c.as_json() for c in self.outputs],
            "metrics": [c.as_json() for c in self.metrics],
        }


@dataclass(frozen=True, slots=True)
class RunDiff:
    a: uuid.UUID
    b: uuid.UUID
    first_divergence: Divergence | None
    steps: list[StepDiff]

    def as_json(self) -> dict[str, Any]:
        return {
            "a": str(self.a),
            "b": str(self.b),
            "first_divergence": None if self.first_divergence is None else self.first_divergence.as_json(),
            "steps": [s.as_json() for s in self.steps],
        }


@dataclass(frozen=True, slots=True)
class Side:
    """One saga's rows, as the store gives them."""

    saga_id: uuid.UUID
    events: Sequence[RecordedEvent]
    outbox: Sequence[RecordedEvent]


def compare(a: Side, b: Side) -> RunDiff:
    left, right = _story(a, _reused(b)), _story(b, _reused(a))
    return RunDiff(a.saga_id, b.saga_id, _first_divergence(left, right), _steps(a, b))


def _reused(side: Side) -> set[str]:
    """The steps ``side`` took from another saga (a fork's ``StepsReused``)."""
    for row in side.events:
        if event_name(row.type) == "StepsReused":
            return set(readable(row.data).get("outputs", {}))
    return set()


def _story(side: Side, reused_by_other: set[str]) -> list[tuple[int, str, dict[str, Any]]]:
    """(number, event, what it says about the work) for each event that compares."""
    sent = _commands(side.outbox)
    out = []
    for number, row in enumerate(side.events, start=1):
        name, data = event_name(row.type), readable(row.data)
        if name == "StepsReused" or data.get("step") in reused_by_other:
            continue  # the same work on both sides (see the module docstring)
        said = {k: v for k, v in data.items() if k not in _NOT_THE_WORK}
        if name == "StepCommanded":
            said["inputs"] = sent.get(str(data.get("message_id")), ABSENT)
        out.append((number, name, said))
    return out


def _commands(outbox: Sequence[RecordedEvent]) -> dict[str, Any]:
    """Each command's inputs (its body without the envelope's fields), by message id."""
    found: dict[str, Any] = {}
    for row in outbox:
        body = row.data if isinstance(row.data, dict) else json.loads(row.data)
        message_id = row.metadata.get("message_id")
        if isinstance(body, dict) and message_id is not None:
            found[str(message_id)] = {k: v for k, v in body.items() if k not in _ENVELOPE}
    return found


def _first_divergence(
    left: list[tuple[int, str, dict[str, Any]]], right: list[tuple[int, str, dict[str, Any]]]
) -> Divergence | None:
    for i in range(max(len(left), len(right))):
        one = left[i] if i < len(left) else None
        two = right[i] if i < len(right) else None
        if one is not None and two is not None and one[1:] == two[1:]:
            continue
        changes = diff(one[2] if one else ABSENT, two[2] if two else ABSENT) if one and two and one[1] == two[1] else []
        return Divergence(
            one[0] if one else None, two[0] if two else None, one[1] if one else None, two[1] if two else None, changes
        )
    return None


def _steps(a: Side, b: Side) -> list[StepDiff]:
    ran_a, ran_b = _per_step(a), _per_step(b)
    out: list[StepDiff] = []
    for step in [*ran_a, *(s for s in ran_b if s not in ran_a)]:
        if step not in ran_b or step not in ran_a:
            out.append(StepDiff(step, only_in="a" if step in ran_a else "b"))
            continue
        (in_a, out_a), (in_b, out_b) = ran_a[step], ran_b[step]
        has_metrics = "metrics" in out_a or "metrics" in out_b
        metrics = diff(out_a.get("metrics", ABSENT), out_b.get("metrics", ABSENT), "metrics") if has_metrics else []
        rest_a = {k: v for k, v in out_a.items() if k != "metrics"}
        rest_b = {k: v for k, v in out_b.items() if k != "metrics"}
        inputs = [] if in_a is None or in_b is None else diff(in_a, in_b)  # a reused step was sent nothing
        found = StepDiff(step, inputs, diff(rest_a, rest_b), metrics)
        if found.inputs or found.outputs or found.metrics:
            out.append(found)
    return out


def _per_step(side: Side) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Each step's inputs (of its last command; None for a step a fork reused) and outputs
    (of its success, or those reused), in the order the saga reached them."""
    sent = _commands(side.outbox)
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    for row in side.events:
        name, data = event_name(row.type), readable(row.data)
        if name == "StepsReused":
            for step, outputs in data.get("outputs", {}).items():
                found[step] = (None, dict(outputs))
        elif name == "StepCommanded":
            found[data["step"]] = (sent.get(str(data.get("message_id")), {}), {})
        elif name == "StepSucceeded" and data["step"] in found:
            found[data["step"]] = (found[data["step"]][0], dict(data.get("outputs") or {}))
    return found
