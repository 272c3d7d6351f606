"""The saga aggregate (eventsourcing's domain model, used in memory).

Its state is only ever the fold of its events; the methods below record events and
apply them. Deciding *which* to call is ``decide.py``'s job. ``deadlines`` holds a
pending timer per step or compensation in flight (its timeout, a retry's backoff), since
the branches of a DAG run side by side; ``deadline`` is the earliest of them, the one the
orchestrator mirrors into the ``saga_timers`` index (one row per saga, as before: when it
fires, the next earliest takes its place).

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
from eventsourcing.utils import get_topic

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
        self,
        saga_id: UUID,
        workflow: str,
        workflow_version: int,
        request: dict[str, Any],
        traceparent: str,
        forked_from: dict[str, Any] | None = None,  # absent from sagas started before forks
        parent: str | None = None,  # the campaign that started it; absent before campaigns
        priority: str = "normal",  # absent from sagas started before the express lane
    ) -> None:
        self.workflow = workflow
        self.forked_from = forked_from
        self.parent = parent
        self.priority = priority
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
        # The attempt of each step and compensation commanded last, and when: "step:<name>"
        # or "compensation:<name>" -> {"attempt": n, "at": ISO 8601}. Observers time an
        # attempt from it when it ends.
        self.commanded: dict[str, dict[str, Any]] = {}
        # Pending timers by "step:<name>" / "compensation:<name>"; ``deadline`` is the earliest.
        self.deadlines: dict[str, Deadline] = {}
        # The items each fanned-out step planned, and the outputs of each branch (kept apart
        # from ``context``, where the branches' same-named outputs would overwrite each other).
        self.fanned: dict[str, list[str]] = {}
        self.branch_outputs: dict[str, dict[str, Any]] = {}

    # Every event but the first is a class with its own ``apply``, triggered by the method
    # below it: the ``@event`` decorator would inspect each call's arguments against the
    # method's signature twice (docs/decisions/0008). Names and fields are those stored
    # since the start, so the log and snapshots fold the same.

    # --- steps -----------------------------------------------------------------------

    class StepCommanded(Aggregate.Event):
        step: str
        attempt: int
        message_id: str
        due_at: str

        def apply(self, saga: Saga) -> None:
            saga.current_step = self.step
            saga.current_attempt = self.attempt
            saga.attempts[self.step] = self.attempt
            _put(saga, deadline(TimerKind.STEP_TIMEOUT, self.step, self.attempt, self.due_at))
            _commanded(saga)[f"step:{self.step}"] = {"attempt": self.attempt, "at": self.timestamp.isoformat()}

    def command_step(self, step: str, attempt: int, message_id: str, due_at: str) -> None:
        self.trigger_event(self.StepCommanded, step=step, attempt=attempt, message_id=message_id, due_at=due_at)

    class StepSucceeded(Aggregate.Event):
        step: str
        attempt: int
        outputs: dict[str, Any]

        def apply(self, saga: Saga) -> None:
            if "[" in self.step:  # a branch: ``ml[linear]``
                _branch_outputs(saga)[self.step] = self.outputs
            else:
                saga.context.update(self.outputs)
            saga.completed.append(self.step)
            saga.outputs = self.outputs
            if saga.current_step == self.step:
                saga.current_step = None
            _drop(saga, f"step:{self.step}")

    def step_succeeded(self, step: str, attempt: int, outputs: dict[str, Any]) -> None:
        self.trigger_event(self.StepSucceeded, step=step, attempt=attempt, outputs=outputs)

    class StepFailed(Aggregate.Event):
        step: str
        attempt: int
        error_kind: str
        error: str

        def apply(self, saga: Saga) -> None:
            saga.failure = f"{self.step} failed ({self.error_kind}): {self.error}"
            _drop(saga, f"step:{self.step}")

    def step_failed(self, step: str, attempt: int, error_kind: str, error: str) -> None:
        self.trigger_event(self.StepFailed, step=step, attempt=attempt, error_kind=error_kind, error=error)

    class StepTimedOut(Aggregate.Event):
        step: str
        attempt: int

        def apply(self, saga: Saga) -> None:
            saga.failure = f"{self.step} timed out (attempt {self.attempt})"
            _drop(saga, f"step:{self.step}")

    def step_timed_out(self, step: str, attempt: int) -> None:
        self.trigger_event(self.StepTimedOut, step=step, attempt=attempt)

    class RetryScheduled(Aggregate.Event):
        step: str
        attempt: int
        due_at: str

        def apply(self, saga: Saga) -> None:
            _put(saga, deadline(TimerKind.RETRY, self.step, self.attempt, self.due_at))

    def schedule_retry(self, step: str, attempt: int, due_at: str) -> None:
        self.trigger_event(self.RetryScheduled, step=step, attempt=attempt, due_at=due_at)

    class StepsReused(Aggregate.Event):
        """A fork took these steps' outputs from the saga it was forked from (they count as
        done, and are not this saga's to undo), then changed ``overrides`` in the context."""

        outputs: dict[str, dict[str, Any]]
        overrides: dict[str, Any]
        from_saga: str

        def apply(self, saga: Saga) -> None:
            for step, outputs in self.outputs.items():
                if "[" in step:
                    _branch_outputs(saga)[step] = outputs
                else:
                    saga.context.update(outputs)
                saga.completed.append(step)
                _reused(saga).append(step)
            for path, value in self.overrides.items():
                _set_path(saga.context, path, value)

    def reuse(self, outputs: dict[str, dict[str, Any]], overrides: dict[str, Any], from_saga: str) -> None:
        self.trigger_event(self.StepsReused, outputs=outputs, overrides=overrides, from_saga=from_saga)

    class FannedOut(Aggregate.Event):
        """A step planned one branch per item (``step[item]``)."""

        step: str
        items: list[str]

        def apply(self, saga: Saga) -> None:
            _fanned(saga)[self.step] = list(self.items)

    def fan_out(self, step: str, items: list[str]) -> None:
        self.trigger_event(self.FannedOut, step=step, items=items)

    # --- a campaign's children (docs/decisions/0022) -----------------------------------

    class ChildStarted(Aggregate.Event):
        """A campaign started child saga ``child`` for trial ``trial``, telling it the
        trials its completed children counted and the spread of their Sharpe ratios."""

        child: str
        trial: int
        message_id: str
        trials_before: int
        trial_sharpe_std: float | None

        def apply(self, saga: Saga) -> None:
            _children(saga)[self.child] = {"trial": self.trial, "state": "RUNNING"}

    def start_child(
        self, child: str, trial: int, message_id: str, trials_before: int, trial_sharpe_std: float | None
    ) -> None:
        self.trigger_event(
            self.ChildStarted,
            child=child,
            trial=trial,
            message_id=message_id,
            trials_before=trials_before,
            trial_sharpe_std=trial_sharpe_std,
        )

    class ChildEnded(Aggregate.Event):
        """A child ended; ``outcome`` is its ``TrialOutcome``, kept in the context's
        ``outcomes`` in the order the children ended (the report step's input)."""

        child: str
        outcome: dict[str, Any]

        def apply(self, saga: Saga) -> None:
            _children(saga)[self.child] = {**_children(saga)[self.child], "state": self.outcome["state"]}
            saga.context["outcomes"] = [*saga.context.get("outcomes", []), self.outcome]

    def end_child(self, child: str, outcome: dict[str, Any]) -> None:
        self.trigger_event(self.ChildEnded, child=child, outcome=outcome)

    def children(self) -> dict[str, dict[str, Any]]:
        """A campaign's children: saga id -> {"trial": n, "state": RUNNING or how it ended}."""
        return _children(self)

    # --- compensation ----------------------------------------------------------------

    class CompensationStarted(Aggregate.Event):
        reason: str
        # A step whose attempt was still in flight (a cancel). It may yet finish, so it is
        # undone too, first, as the newest; undoing is idempotent and harmless for a step
        # that did nothing. Events stored before this field fold the same.
        interrupted: str | None = None
        # Every step in flight when a DAG's saga stopped (branches running side by side),
        # undone like ``interrupted``. Events stored before this field fold the same.
        in_flight: list[str] | None = None

        def apply(self, saga: Saga) -> None:
            saga.state = SagaState.COMPENSATING
            saga.failure = self.reason
            saga.current_step = None
            deadlines = _deadlines(saga)
            for key in [k for k in deadlines if k.startswith("step:")]:  # no step starts again
                del deadlines[key]
            _earliest(saga)
            interrupted = getattr(self, "interrupted", None)  # absent from events stored before it
            in_flight = getattr(self, "in_flight", None) or []
            reused = set(_reused(saga))  # another saga's work: not this one's to undo
            done = [s for s in reversed(saga.completed) if s not in reused]
            saga.to_compensate = ([interrupted] if interrupted else []) + list(in_flight) + done

    def start_compensation(self, reason: str, in_flight: list[str] | None = None) -> None:
        """``in_flight``: the steps whose attempt may still finish; one is recorded as
        ``interrupted``, as a linear saga always did, more as ``in_flight``."""
        steps = list(in_flight or [])
        if len(steps) <= 1:
            interrupted = steps[0] if steps else None
            self.trigger_event(self.CompensationStarted, reason=reason, interrupted=interrupted)
        else:
            self.trigger_event(self.CompensationStarted, reason=reason, interrupted=None, in_flight=steps)

    class CompensationCommanded(Aggregate.Event):
        step: str
        attempt: int
        message_id: str
        due_at: str

        def apply(self, saga: Saga) -> None:
            saga.compensating_step = self.step
            saga.compensation_attempt = self.attempt
            _put(saga, deadline(TimerKind.COMPENSATION_TIMEOUT, self.step, self.attempt, self.due_at))
            key = f"compensation:{self.step}"
            _commanded(saga)[key] = {"attempt": self.attempt, "at": self.timestamp.isoformat()}

    def command_compensation(self, step: str, attempt: int, message_id: str, due_at: str) -> None:
        self.trigger_event(self.CompensationCommanded, step=step, attempt=attempt, message_id=message_id, due_at=due_at)

    class CompensationAttemptFailed(Aggregate.Event):
        step: str
        attempt: int
        error: str

        def apply(self, saga: Saga) -> None:
            _drop(saga, f"compensation:{self.step}")

    def compensation_attempt_failed(self, step: str, attempt: int, error: str) -> None:
        self.trigger_event(self.CompensationAttemptFailed, step=step, attempt=attempt, error=error)

    class CompensationRetryScheduled(Aggregate.Event):
        step: str
        attempt: int
        due_at: str

        def apply(self, saga: Saga) -> None:
            _put(saga, deadline(TimerKind.COMPENSATION_RETRY, self.step, self.attempt, self.due_at))

    def schedule_compensation_retry(self, step: str, attempt: int, due_at: str) -> None:
        self.trigger_event(self.CompensationRetryScheduled, step=step, attempt=attempt, due_at=due_at)

    class StepCompensated(Aggregate.Event):
        step: str

        def apply(self, saga: Saga) -> None:
            saga.to_compensate.remove(self.step)
            if saga.compensating_step == self.step:
                saga.compensating_step = None
            _drop(saga, f"compensation:{self.step}")

    def step_compensated(self, step: str) -> None:
        self.trigger_event(self.StepCompensated, step=step)

    # --- ends --------------------------------------------------------------------------

    class Completed(Aggregate.Event):
        def apply(self, saga: Saga) -> None:
            saga.state = SagaState.COMPLETED
            _deadlines(saga).clear()
            saga.deadline = None

    def complete(self) -> None:
        self.trigger_event(self.Completed)

    class RolledBack(Aggregate.Event):
        def apply(self, saga: Saga) -> None:
            saga.state = SagaState.ROLLED_BACK
            _deadlines(saga).clear()
            saga.deadline = None

    def roll_back(self) -> None:
        self.trigger_event(self.RolledBack)

    class CompensationFailed(Aggregate.Event):
        step: str
        error: str

        def apply(self, saga: Saga) -> None:
            saga.state = SagaState.COMPENSATION_FAILED
            saga.failure = f"compensation of {self.step} failed: {self.error}"
            saga.compensating_step = None
            _deadlines(saga).clear()
            saga.deadline = None

    def fail_compensation(self, step: str, error: str) -> None:
        self.trigger_event(self.CompensationFailed, step=step, error=error)

    @property
    def saga_id(self) -> UUID:
        return self.id

    @property
    def terminal(self) -> bool:
        # A state read back from a snapshot is a plain str: look it up, do not trust its type.
        return SagaState(self.state).terminal

    def waiting_for(self, kind: TimerKind, step: str, attempt: int) -> bool:
        """Whether one of the saga's pending deadlines is this one (a reply or timer it expects)."""
        d = _deadlines(self).get(_key(kind, step))
        return d is not None and d["kind"] == kind and d["attempt"] == attempt

    def has_pending(self) -> bool:
        """Whether any step or compensation is out, or waits for its next attempt."""
        return bool(_deadlines(self))

    def in_flight(self) -> list[str]:
        """The steps whose attempt is out and unanswered."""
        return [d["step"] for d in _deadlines(self).values() if d["kind"] == TimerKind.STEP_TIMEOUT]

    def compensation_pending(self, step: str) -> bool:
        """Whether ``step``'s compensation is out, or waiting for its next attempt."""
        return f"compensation:{step}" in _deadlines(self)

    def planned(self) -> dict[str, list[str]]:
        return _fanned(self)

    def branch_results(self) -> dict[str, dict[str, Any]]:
        return _branch_outputs(self)


def _commanded(saga: Saga) -> dict[str, dict[str, Any]]:
    """``saga.commanded``, also for a saga read from a snapshot taken before it existed."""
    found: dict[str, dict[str, Any]] = saga.__dict__.setdefault("commanded", {})
    return found


def _key(kind: TimerKind | str, step: str) -> str:
    compensation = kind in (TimerKind.COMPENSATION_TIMEOUT, TimerKind.COMPENSATION_RETRY)
    return f"{'compensation' if compensation else 'step'}:{step}"


def _deadlines(saga: Saga) -> dict[str, Deadline]:
    """``saga.deadlines``; a snapshot taken before it existed had one ``deadline`` at most."""
    if "deadlines" not in saga.__dict__:
        d = saga.deadline
        saga.__dict__["deadlines"] = {_key(d["kind"], d["step"]): d} if d is not None else {}
    found: dict[str, Deadline] = saga.__dict__["deadlines"]
    return found


def _children(saga: Saga) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = saga.__dict__.setdefault("child_sagas", {})
    return found


def _reused(saga: Saga) -> list[str]:
    found: list[str] = saga.__dict__.setdefault("reused", [])
    return found


def _set_path(context: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.c`` in ``context``, copying each dict on the way (the events' own data is
    never changed in place)."""
    head, _, rest = path.partition(".")
    if not rest:
        context[head] = value
        return
    inner = dict(context.get(head) or {})
    _set_path(inner, rest, value)
    context[head] = inner


def _fanned(saga: Saga) -> dict[str, list[str]]:
    found: dict[str, list[str]] = saga.__dict__.setdefault("fanned", {})
    return found


def _branch_outputs(saga: Saga) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = saga.__dict__.setdefault("branch_outputs", {})
    return found


def _earliest(saga: Saga) -> None:
    pending = _deadlines(saga)
    if len(pending) <= 1:  # a chain's case: no time to parse
        saga.deadline = next(iter(pending.values()), None)
    else:
        saga.deadline = min(pending.values(), key=due_time)


def _put(saga: Saga, pending: Deadline) -> None:
    _deadlines(saga)[_key(pending["kind"], pending["step"])] = pending
    _earliest(saga)


def _drop(saga: Saga, key: str) -> None:
    _deadlines(saga).pop(key, None)
    _earliest(saga)


# Each stored event and snapshot names its class by a topic, which eventsourcing derives
# from the module the class lives in. The aggregate was written in the orchestrator's
# ``saga`` module: its topics are the log's format now, not a path to this code, so they
# are pinned, and the log reads the same whichever package holds the aggregate
# (docs/decisions/0012).
STORED_MODULE = "alphasaga_orchestrator.saga"


def _pin_topics() -> None:
    nested: list[type] = [v for v in vars(Saga).values() if isinstance(v, type) and issubclass(v, Aggregate.Event)]
    for cls in [Saga, *nested]:
        cls.TOPIC = f"{STORED_MODULE}:{cls.__qualname__}"  # type: ignore[attr-defined]
        get_topic(cls)  # also registers the topic, so that reading it never imports the old module


_pin_topics()


def ending_topics() -> list[str]:
    """The stored types of the events that end a saga: the archive moves only sagas whose
    newest event is one of them."""
    return sorted(getattr(Saga, name).TOPIC for name in ENDING_EVENTS)


def priority_of(saga: Saga) -> str:
    """The saga's lane (``Priority``), also for one read from a snapshot taken before lanes."""
    found: str = saga.__dict__.get("priority", "normal")
    return found


def state_of(saga: Saga | None) -> dict[str, Any]:
    """The saga's state as plain JSON-able data (for replay, status and tests)."""
    if saga is None:
        return {}
    plain: dict[str, Any] = json.loads(state_json(saga))
    return plain


def state_json(saga: Saga) -> str:
    """``state_of`` as JSON text (what the saga-summary projection stores)."""
    for materialise in (_deadlines, _fanned, _branch_outputs, _reused, _children):  # also from an old snapshot
        materialise(saga)
    saga.__dict__.setdefault("forked_from", None)
    saga.__dict__.setdefault("parent", None)
    saga.__dict__.setdefault("priority", "normal")
    public = {k: v for k, v in vars(saga).items() if not k.startswith("_")}
    public["saga_id"] = str(saga.id)
    public["version"] = saga.version
    public.pop("context", None)  # every step's outputs: large; the names are enough here
    public["context_keys"] = sorted(saga.context)
    return json.dumps(public, default=str)
