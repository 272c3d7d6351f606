"""The saga aggregate (eventsourcing's domain model, used in memory).

Its state is only ever the fold of its events; the methods below record events and
apply them. Deciding *which* to call is ``decide.py``'s job. ``deadline`` is the one
pending timer a saga can have (a step's timeout, a retry's backoff, a compensation's
timeout or backoff); the orchestrator mirrors it into the ``saga_timers`` index.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

TERMINAL = ("COMPLETED", "ROLLED_BACK", "COMPENSATION_FAILED")


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
        self.state = "RUNNING"
        self.context: dict[str, Any] = {"request": request}
        self.current_step: str | None = None
        self.current_attempt = 0
        self.attempts: dict[str, int] = {}
        self.completed: list[str] = []
        self.to_compensate: list[str] = []
        self.compensating_step: str | None = None
        self.compensation_attempt = 0
        self.deadline: dict[str, Any] | None = None
        self.failure: str | None = None
        self.outputs: dict[str, Any] = {}

    # --- steps -----------------------------------------------------------------------

    @event("StepCommanded")
    def command_step(self, step: str, attempt: int, message_id: str, due_at: str) -> None:
        self.current_step = step
        self.current_attempt = attempt
        self.attempts[step] = attempt
        self.deadline = {"kind": "step_timeout", "step": step, "attempt": attempt, "due_at": due_at}

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
        self.deadline = {"kind": "retry", "step": step, "attempt": attempt, "due_at": due_at}

    # --- compensation ----------------------------------------------------------------

    @event("CompensationStarted")
    def start_compensation(self, reason: str, interrupted: str | None = None) -> None:
        # ``interrupted``: a step whose attempt was still in flight (a cancel). It may yet
        # finish, so it is undone too, first, as the newest; undoing is idempotent and
        # harmless for a step that did nothing. Events stored before this field fold the same.
        self.state = "COMPENSATING"
        self.failure = reason
        self.current_step = None
        self.deadline = None
        self.to_compensate = ([interrupted] if interrupted else []) + list(reversed(self.completed))

    @event("CompensationCommanded")
    def command_compensation(self, step: str, attempt: int, message_id: str, due_at: str) -> None:
        self.compensating_step = step
        self.compensation_attempt = attempt
        self.deadline = {"kind": "compensation_timeout", "step": step, "attempt": attempt, "due_at": due_at}

    @event("CompensationAttemptFailed")
    def compensation_attempt_failed(self, step: str, attempt: int, error: str) -> None:
        self.deadline = None

    @event("CompensationRetryScheduled")
    def schedule_compensation_retry(self, step: str, attempt: int, due_at: str) -> None:
        self.deadline = {"kind": "compensation_retry", "step": step, "attempt": attempt, "due_at": due_at}

    @event("StepCompensated")
    def step_compensated(self, step: str) -> None:
        self.to_compensate.remove(step)
        self.compensating_step = None
        self.deadline = None

    # --- ends --------------------------------------------------------------------------

    @event("Completed")
    def complete(self) -> None:
        self.state = "COMPLETED"
        self.deadline = None

    @event("RolledBack")
    def roll_back(self) -> None:
        self.state = "ROLLED_BACK"
        self.deadline = None

    @event("CompensationFailed")
    def fail_compensation(self, step: str, error: str) -> None:
        self.state = "COMPENSATION_FAILED"
        self.failure = f"compensation of {step} failed: {error}"
        self.compensating_step = None
        self.deadline = None

    @property
    def saga_id(self) -> UUID:
        return self.id

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


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
