"""A fork's start, planned from the source saga's log (pure): the steps ``from_step``
needs, directly or through others, are reused with their outputs (their artifacts are
content-addressed: the new saga refers to the same ones); ``request.<field>`` changes go
into the new request, validated here; any other change names a value in the saga's
context (a step's output or input by name, ``hypothesis.label_horizon``) and is checked
by the orchestrator against the workflow, then by the command it ends up in."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from alphasaga_contracts import Priority
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_saga import dag
from alphasaga_saga.workflow import WorkflowRegistry
from alphasaga_shared.errors import InvalidRequest
from alphasaga_shared.eventstore import RecordedEvent

from .timetravel import event_name, readable


def plan_fork(
    source: uuid.UUID,
    rows: Sequence[RecordedEvent],
    workflows: WorkflowRegistry,
    from_step: str,
    changes: Mapping[str, Any],
    *,
    new_id: uuid.UUID | None = None,
) -> sg.StartResearch:
    if not rows or event_name(rows[0].type) != "Started":
        raise InvalidRequest(f"saga {source} has no history to fork")
    started = readable(rows[0].data)
    try:
        workflow = workflows.get(str(started["workflow"]), int(started["workflow_version"]))
        workflow.step(from_step)
    except KeyError as exc:
        raise InvalidRequest(f"cannot fork saga {source}: {exc.args[0]}") from None
    needed = dag.ancestors(workflow, {}, from_step)
    outputs = _outputs_of(rows)
    missing = sorted(needed - set(outputs))
    if missing:
        raise InvalidRequest(f"cannot fork saga {source} from {from_step}: {', '.join(missing)} did not succeed in it")
    request = dict(started["request"])
    overrides: dict[str, Any] = {}
    for path, value in changes.items():
        if path.startswith("request."):
            request[path.removeprefix("request.")] = value
        else:
            overrides[path] = value
    try:
        checked = ResearchRequest.model_validate(request)
    except ValidationError as exc:
        raise InvalidRequest(f"the forked request is not valid: {exc}") from None
    fork = sg.Fork(
        saga_id=source,
        version=len(rows),
        from_step=from_step,
        reused={step: outputs[step] for step in workflow.order(needed)},
        overrides=overrides,
    )
    return sg.StartResearch(
        saga_id=new_id or uuid.uuid4(),
        workflow=workflow.name,
        workflow_version=workflow.version,
        request=checked,
        fork=fork,
        priority=Priority(started.get("priority", Priority.NORMAL)),  # a fork keeps its source's lane
    )


def _outputs_of(rows: Sequence[RecordedEvent]) -> dict[str, dict[str, Any]]:
    """Each step's outputs: of its success, or of a fork's reuse (a fork of a fork)."""
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        name, data = event_name(row.type), readable(row.data)
        if name == "StepsReused":
            found.update({step: dict(out) for step, out in data.get("outputs", {}).items()})
        elif name == "StepSucceeded":
            found[str(data["step"])] = dict(data.get("outputs") or {})
    return found
