"""The rows of the saga list (``saga_summaries``) and how each is made: from a folded saga
(``summary_of``), or, for a saga id whose saga does not exist yet, from what its outbox
holds (``submission_summary``: PENDING or REJECTED)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from alphasaga_contracts import SubmissionState
from alphasaga_contracts.states import is_terminal
from alphasaga_shared.eventstore import JsonText, RecordedEvent

if TYPE_CHECKING:  # the aggregate (eventsourcing) loads only where a saga is folded: status and list stay light
    from alphasaga_saga.aggregate import Saga

# The outbox rows that say what became of a saga id before (or instead of) its saga.
START_TYPE = "orchestrator.StartResearch"
START_TYPES = {START_TYPE: "research", "orchestrator.StartCampaign": "campaign"}  # -> the workflow
REJECTED_TYPE = "sagas.RequestRejected"
# The projector's position (and lock) in the event store.
PROJECTION = "projection:saga_summaries"


@dataclass(frozen=True, slots=True)
class SagaSummary:
    """One row of ``saga_summaries``: a saga as status and list show it. The fields up to
    ``dataset`` are the table's columns, in order; ``submitted_at`` is known only of a saga
    id answered from its outbox (PENDING or REJECTED), and is not stored."""

    saga_id: uuid.UUID
    state: str
    workflow: str
    workflow_version: int
    current_step: str | None
    attempt: int
    steps_completed: list[str]
    failure: str | None
    verdict: dict[str, Any] | None
    metrics: dict[str, Any] | None
    version: int
    started_at: dt.datetime
    updated_at: dt.datetime
    saga_state: dict[str, Any] | JsonText  # JsonText when just folded: stored without re-encoding
    dataset: str | None = None  # the request's dataset, or its data file's name
    submitted_at: dt.datetime | None = None

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)

    def as_json(self, *, with_state: bool = True) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in COLUMNS if name != "saga_state"}
        out.update(
            saga_id=str(self.saga_id),
            steps_completed=list(self.steps_completed),
            started_at=self.started_at.isoformat(),
            updated_at=self.updated_at.isoformat(),
        )
        if self.submitted_at is not None:
            out["submitted_at"] = self.submitted_at.isoformat()
        if with_state:
            out["saga_state"] = json.loads(self.saga_state) if isinstance(self.saga_state, str) else self.saga_state
        return out

    def args(self) -> tuple[Any, ...]:
        """The column values, in order (an upsert's arguments)."""
        return tuple(getattr(self, name) for name in COLUMNS)


COLUMNS = tuple(f.name for f in fields(SagaSummary) if f.name != "submitted_at")


@dataclass(frozen=True, slots=True)
class SagaFilter:
    """Which sagas a list shows; None means any."""

    state: str | None = None
    workflow: str | None = None
    workflow_version: int | None = None
    dataset: str | None = None
    accepted: bool | None = None
    min_sharpe: float | None = None
    max_sharpe: float | None = None
    started_after: dt.datetime | None = None
    started_before: dt.datetime | None = None
    limit: int | None = None
    oldest_first: bool = False
    # Rows after this (started_at, saga_id), in the list's order: the last row of a page.
    after: tuple[dt.datetime, uuid.UUID] | None = None
    # The start of the saga id, lowercase hex digits and dashes only (checked by the caller:
    # a LIKE wildcard here would widen the match).
    id_prefix: str | None = None


def summarise(saga: Saga, rows: Sequence[RecordedEvent]) -> SagaSummary:
    """The summary of ``saga`` folded from ``rows`` (its whole stream, oldest first)."""
    return summary_of(saga, rows[0].recorded_at, rows[-1].recorded_at)


def summary_of(saga: Saga, started_at: dt.datetime, updated_at: dt.datetime) -> SagaSummary:
    """The summary of ``saga``, first recorded at ``started_at``, last at ``updated_at``.

    Read with ``getattr``: the aggregate gains attributes over time, and a summary of an
    older saga must still be written."""
    context: dict[str, Any] = getattr(saga, "context", None) or {}
    verdict = context.get("verdict")
    metrics = context.get("metrics")
    request = context.get("request") or {}
    current = getattr(saga, "current_step", None) or getattr(saga, "compensating_step", None)
    return SagaSummary(
        saga_id=saga.id,
        state=str(getattr(saga, "state", "UNKNOWN")),
        workflow=str(getattr(saga, "workflow", "")),
        workflow_version=int(getattr(saga, "workflow_version", 0)),
        current_step=current,
        attempt=int(getattr(saga, "current_attempt", 0) or 0),
        steps_completed=[str(s) for s in getattr(saga, "completed", [])],
        failure=getattr(saga, "failure", None),
        verdict=verdict if isinstance(verdict, dict) else None,
        metrics=metrics if isinstance(metrics, dict) else None,
        version=saga.version,
        started_at=started_at,
        updated_at=updated_at,
        saga_state=JsonText(_state_json(saga)),
        dataset=dataset_of(request),
    )


def _state_json(saga: Saga) -> str:
    from alphasaga_saga.aggregate import state_json

    return state_json(saga)


def dataset_of(request: dict[str, Any]) -> str | None:
    """The built-in dataset a request names, or its data file's name."""
    if request.get("dataset"):
        return str(request["dataset"])
    if request.get("data_path"):
        return str(request["data_path"]).replace("\\", "/").rsplit("/", 1)[-1]
    return None


def submission_summary(saga_id: uuid.UUID, outbox: Sequence[RecordedEvent]) -> SagaSummary | None:
    """What a saga id that has no saga answers, from its outbox: REJECTED with the
    orchestrator's reason when it refused the start, PENDING while its recorded start waits
    for the orchestrator; None when the outbox says neither (no such saga)."""
    start = next((r for r in outbox if r.type in START_TYPES), None)
    refusal = next((r for r in outbox if r.type == REJECTED_TYPE and _data(r).get("request_type") in START_TYPES), None)
    if start is None and refusal is None:
        return None
    request = _data(start).get("request") or {}
    first = start or refusal
    assert first is not None
    last = refusal or first
    return SagaSummary(
        saga_id=saga_id,
        state=str(SubmissionState.REJECTED if refusal is not None else SubmissionState.PENDING),
        workflow=str(_data(start).get("workflow", START_TYPES.get(start.type, "") if start else "")),
        workflow_version=0,
        current_step=None,
        attempt=0,
        steps_completed=[],
        failure=str(_data(refusal).get("reason", "")) if refusal is not None else None,
        verdict=None,
        metrics=None,
        version=0,
        started_at=first.recorded_at,
        updated_at=last.recorded_at,
        saga_state={},
        dataset=dataset_of(request),
        submitted_at=start.recorded_at if start is not None else None,
    )


def _data(row: RecordedEvent | None) -> dict[str, Any]:
    if row is None:
        return {}
    data = json.loads(row.data) if isinstance(row.data, str) else row.data
    return data if isinstance(data, dict) else {}
