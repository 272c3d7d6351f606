"""The saga aggregate (eventsourcing's domain model, used in memory).

Its state is only ever the fold of its events; the methods below record events and
apply them. Deciding *which* to call is ``decide.py``'s job. ``deadline`` is the one
pending timer a saga can have (a step's timeout, a retry's backoff, a compensation's
timeout or backoff); the orchestrator mirrors it into the ``saga_timers`` index.

States and deadlines are stored as plain JSON (a state's name, a deadline's fields), as
they always were: a snapshot or an event written by an older version folds the same.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any, TypedDict
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from alphasaga_contracts import SagaState


class TimerKind(StrEnum):
    STEP_TIMEOUT = "step_timeout"
    RETRY = "retry"
    COMPENSATION_TIMEOUT = "compensation_timeout"
    COMPENSATION_RETRY = "compensation_retry"


class Deadline(TypedDict):
    """The saga's one pending timer. A mapping, so that it is stored as the same JSON
    object in snapshots whatever this code's version."""

    kind: TimerKind
    step: str
    attempt: int
    due_at: str  # ISO 8601, as recorded in the event that set it


def deadline(kind: TimerKind, step: str, attempt: int, due_at: str) -> Deadline:
    return {"kind": kind, "step": step, "attempt": attempt, "due_at": due_at}


def due_time(pending: Deadline) -> dt.datetime:
    return dt.datetime.fromisoformat(pending["due_at"])


# The aggregate's events that end a saga, and the state each leaves it in.
ENDING_EVENTS = {
    "Completed": SagaState.COMPLETED,
    "RolledBack": SagaState.ROLLED_BACK,
    "CompensationFailed": SagaState.COMPENSATION_FAILED,
}


class Saga(Aggregate):
    @staticmethod
    def create_id(saga_id: UUID, **_: Any) -> UUID:
        return saga_id

    @event("Started")
    def __init__(
        self, saga_id: UUID, workflow: str, workflow_version: int, request: dict[str, Any], traceparent: str
    ) -> None:
        self.workflow = workflow
        self.workflow_version = workflow_version
        self.traceparent = traceparent
        self.state = SagaState.RUNNING
        self.context: dict[str, Any] = {"request": request}
        self.current_step: str | None = None
        self.current_attempt = 0
        self.attempts: dict[str, int] = {}
        self.completed: list[str] = []
        self.to_compensate: list[str] = []
        self.compensating_step: str | None = None
        self.compensation_attempt = 0
        self.deadline: Deadline | None = None
        self.failure: str | None = None
        self.outputs: dict[str, Any] = {}

    # --- steps -----------------------------------------------------------------------

    @event("StepCommanded")
    def command_step(self, step: str, attempt: int, message_id: str, due_at: str) -> None:
        self.current_step = step
        self.current_attempt = attempt
        self.attempts[step] = attempt
        self.deadline = deadline(TimerKind.STEP_TIMEOUT, step, attempt, due_at)

    @event("StepSucceeded")
    def step_succeeded(self, step: str, attempt: int, outputs: dict[str, Any]) -> None:
        self.context.update(outputs)
        self.completed.append(step)
        self.outputs = outputs
        self.current_step = None
        self.deadline = None

    @event("StepFailed")
    def step_failed(self, step: str, attempt: int, error_kind: str, error: str) -> None:
        self.failure = f"{step} failed ({error_kind}): {error}"
        self.deadline = None

    @event("StepTimedOut")
    def step_timed_out(self, step: str, attempt: int) -> None:
        self.failure = f"{step} timed out (attempt {attempt})"
        self.deadline = None

    @event("RetryScheduled")
    def schedule_retry(self, step: str, attempt: int, due_at: str) -> None:
        self.deadline = deadline(TimerKind.RETRY, step, attempt, due_at)

    # --- compensation ----------------------------------------------------------------

    @event("CompensationStarted")
    def start_compensation(self, reason: str, interrupted: str | None = None) -> None:
        # ``interrupted``: a step whose attempt was still in flight (a cancel). It may yet
        # finish, so it is undone too, first, as the newest; undoing is idempotent and
        # harmless for a step that did nothing. Events stored before this field fold the same.
        self.state = SagaState.COMPENSATING
        self.failure = reason
        self.current_step = None
        self.deadline = None
        self.to_compensate = ([interrupted] if interrupted else []) + list(reversed(self.completed))

    @event("CompensationCommanded")
    def command_compensation(self, step: str, attempt: int, message_id: str, due_at: str) -> None:
        self.compensating_step = step
        self.compensation_attempt = attempt
        self.deadline = deadline(TimerKind.COMPENSATION_TIMEOUT, step, attempt, due_at)

    @event("CompensationAttemptFailed")
    def compensation_attempt_failed(self, step: str, attempt: int, error: str) -> None:
        self.deadline = None

    @event("CompensationRetryScheduled")
    def schedule_compensation_retry(self, step: str, attempt: int, due_at: str) -> None:
        self.deadline = deadline(TimerKind.COMPENSATION_RETRY, step, attempt, due_at)

    @event("StepCompensated")
    def step_compensated(self, step: str) -> None:
        self.to_compensate.remove(step)
        self.compensating_step = None
        self.deadline = None

    # --- ends --------------------------------------------------------------------------

    @event("Completed")
    def complete(self) -> None:
        self.state = SagaState.COMPLETED
        self.deadline = None

    @event("RolledBack")
    def roll_back(self) -> None:
        self.state = SagaState.ROLLED_BACK
        self.deadline = None

    @event("CompensationFailed")
    def fail_compensation(self, step: str, error: str) -> None:
        self.state = SagaState.COMPENSATION_FAILED
        self.failure = f"compensation of {step} failed: {error}"
        self.compensating_step = None
        self.deadline = None

    @property
    def saga_id(self) -> UUID:
        return self.id

    @property
    def terminal(self) -> bool:
        # A state read back from a snapshot is a plain str: look it up, do not trust its type.
        return SagaState(self.state).terminal

    def waiting_for(self, kind: TimerKind, step: str, attempt: int) -> bool:
        """Whether the saga's pending deadline is this one (the reply or timer it expects)."""
        d = self.deadline
        return d is not None and d["kind"] == kind and d["step"] == step and d["attempt"] == attempt


def state_of(saga: Saga | None) -> dict[str, Any]:
    """The saga's state as plain JSON-able data (for replay, status and tests)."""
    if saga is None:
        return {}
    plain: dict[str, Any] = json.loads(state_json(saga))
    return plain


def state_json(saga: Saga) -> str:
    """``state_of`` as JSON text (what the saga-summary projection stores)."""
    public = {k: v for k, v in vars(saga).items() if not k.startswith("_")}
    public["saga_id"] = str(saga.id)
    public["version"] = saga.version
    public.pop("context", None)  # every step's outputs: large; the names are enough here
    public["context_keys"] = sorted(saga.context)
    return json.dumps(public, default=str)
