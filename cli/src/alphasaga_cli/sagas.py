"""Sagas as the event store knows them: found by id (or a unique prefix of it) and
followed step by step as their events commit."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alphasaga_orchestrator.repository import SagaRepository, saga_stream
from alphasaga_orchestrator.saga import Saga
from alphasaga_orchestrator.workflow import DEFAULT_WORKFLOWS, WorkflowFileError, WorkflowRegistry, load_workflows
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore, RecordedEvent

from .errors import NOT_COMPLETED, CliError
from .timefmt import seconds

MIN_PREFIX = 4


async def resolve_saga(store: EventStore, text: str) -> uuid.UUID:
    """The saga named by ``text``: a full id, or a unique prefix of one (like git)."""
    text = text.strip().lower()
    try:
        saga_id = uuid.UUID(text)
    except ValueError:
        saga_id = None
    async with store.pool.acquire() as conn:
        if saga_id is not None:
            if await conn.fetchval("SELECT 1 FROM events WHERE stream_id = $1 LIMIT 1", saga_stream(saga_id)):
                return saga_id
        elif len(text) >= MIN_PREFIX and all(c in "0123456789abcdef-" for c in text):
            found = await conn.fetch(
                "SELECT DISTINCT stream_id FROM events WHERE stream_id LIKE $1 LIMIT 2", f"saga-{text}%"
            )
            if len(found) == 1:
                return uuid.UUID(found[0]["stream_id"].removeprefix("saga-"))
            if len(found) > 1:
                raise CliError(f"saga id prefix {text!r} is ambiguous: give more characters")
        elif saga_id is None:
            raise CliError(f"{text!r} is not a saga id (a UUID, or at least {MIN_PREFIX} of its first characters)")
    raise CliError(f"no saga {text} in schema {store.schema!r} (check ALPHASAGA_DATABASE_SCHEMA)")


def workflows_for(settings: Settings) -> WorkflowRegistry:
    """The orchestrator's workflows (``ALPHASAGA_WORKFLOWS``), to show steps not yet run."""
    try:
        return load_workflows(settings.workflows)
    except WorkflowFileError:
        return DEFAULT_WORKFLOWS  # the view then shows steps as they run


def event_name(event_type: str) -> str:
    """``alphasaga_orchestrator.saga:Saga.StepCommanded`` -> ``StepCommanded``."""
    return event_type.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


def _words(name: str) -> str:
    out = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return out or name


# How an event that names a step moves that step's line. Events the aggregate may gain
# later (retries, timeouts) still show, under their own name.
_STEP_STATUS = {
    "StepCommanded": ("running", False),
    "StepSucceeded": ("done", True),
    "StepFailed": ("failed", True),
    "StepTimedOut": ("timed out", True),
    "RetryScheduled": ("retry scheduled", False),
    "CompensationCommanded": ("compensating", False),
    "CompensationAttemptFailed": ("compensation attempt failed", False),
    "CompensationRetryScheduled": ("compensation retry scheduled", False),
    "StepCompensated": ("compensated", True),
    "CompensationFailed": ("compensation failed", True),
}
# The events whose attempt is the step's own (not a compensation's, not a future one).
_STEP_ATTEMPTS = frozenset({"StepCommanded", "StepSucceeded", "StepFailed", "StepTimedOut"})


@dataclass
class StepLine:
    name: str
    status: str = "pending"
    attempt: int = 0
    started: dt.datetime | None = None
    ended: dt.datetime | None = None

    def elapsed(self, now: dt.datetime) -> float | None:
        if self.started is None:
            return None
        return max(0.0, ((self.ended or now) - self.started).total_seconds())

    def render(self, now: dt.datetime) -> str:
        # In a plain log a line is printed when the step changes: a step that has just
        # started has no elapsed time worth printing yet.
        elapsed = self.elapsed(now) if self.ended is not None or self.status != "running" else None
        attempt = f"attempt {self.attempt}" if self.attempt else ""
        return f"{self.name:<12} {self.status:<20} {attempt:<10} {seconds(elapsed) if elapsed is not None else ''}"


@dataclass
class Progress:
    """The saga folded so far, and one line per step for the progress view."""

    saga_id: uuid.UUID
    repo: SagaRepository
    workflows: WorkflowRegistry = DEFAULT_WORKFLOWS
    saga: Saga | None = None
    rows: list[RecordedEvent] = field(default_factory=list)
    steps: dict[str, StepLine] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return self.rows[-1].version if self.rows else 0

    @property
    def state(self) -> str:
        return str(getattr(self.saga, "state", "PENDING"))

    @property
    def terminal(self) -> bool:
        return bool(self.saga is not None and self.saga.terminal)

    def started_at(self) -> dt.datetime | None:
        return self.rows[0].recorded_at if self.rows else None

    def apply(self, row: RecordedEvent) -> list[str]:
        """Fold ``row``; returns the lines worth printing about it (for a plain log)."""
        self.saga = self.repo.to_domain_event(self.saga_id, row).mutate(self.saga)
        self.rows.append(row)
        name = event_name(row.type)
        if name == "Started" and self.saga is not None:
            self._expect_steps(self.saga)
            return []
        step = row.data.get("step")
        if not isinstance(step, str):
            reason = row.data.get("reason")
            return [f"{_words(name)}: {reason}"] if reason else []
        line = self.steps.setdefault(step, StepLine(step))
        status, ends = _STEP_STATUS.get(name, (_words(name), False))
        if name == "CompensationCommanded" or line.started is None:
            line.started, line.ended = row.recorded_at, None
        if ends:
            line.ended = row.recorded_at
        if isinstance(row.data.get("attempt"), int) and name in _STEP_ATTEMPTS:
            line.attempt = row.data["attempt"]
        line.status = status
        if name == "StepFailed" and row.data.get("error"):
            return [line.render(row.recorded_at) + f"  {row.data['error']}"]
        return [line.render(row.recorded_at)]

    def _expect_steps(self, saga: Saga) -> None:
        try:
            workflow = self.workflows.get(saga.workflow, saga.workflow_version)
        except KeyError:
            return  # a workflow this CLI does not know: steps appear as they run
        for step in workflow.steps:
            self.steps.setdefault(step.name, StepLine(step.name))

    def outcome(self) -> dict[str, Any]:
        """What ``submit --wait`` and ``watch`` print at the end (and as JSON)."""
        saga = self.saga
        context: dict[str, Any] = getattr(saga, "context", None) or {}
        start, end = self.started_at(), self.rows[-1].recorded_at if self.rows else None
        now = dt.datetime.now(dt.UTC)
        return {
            "saga_id": str(self.saga_id),
            "state": self.state,
            "failure": getattr(saga, "failure", None),
            "verdict": context.get("verdict"),
            "metrics": context.get("metrics"),
            "elapsed_s": (end - start).total_seconds() if start and end else None,
            "steps": [
                {"step": s.name, "status": s.status, "attempt": s.attempt, "elapsed_s": s.elapsed(end or now)}
                for s in self.steps.values()
            ],
        }


async def follow_saga(
    store: EventStore,
    progress: Progress,
    *,
    timeout_s: float,
    on_lines: Callable[[list[str]], None],
    on_tick: Callable[[], None] | None = None,
    poll_s: float = 0.2,
) -> Progress:
    """Fold the saga's events as they commit until it ends; after ``timeout_s`` fail with
    exit code 1 (it did not complete)."""
    deadline = time.monotonic() + timeout_s
    stream = saga_stream(progress.saga_id)
    while True:
        for row in await store.read_stream(stream, after_version=progress.version):
            try:
                lines = progress.apply(row)
            except Exception as exc:
                raise CliError(
                    f"event {row.version} of saga {progress.saga_id} cannot be folded: {exc}"
                    f" (see `alphasaga replay {progress.saga_id} --check`)"
                ) from None
            on_lines(lines)
        if progress.terminal:
            return progress
        if on_tick is not None:
            on_tick()
        if time.monotonic() > deadline:
            raise CliError(
                f"saga {progress.saga_id} is still {progress.state} after {timeout_s:.0f}s", code=NOT_COMPLETED
            )
        await asyncio.sleep(poll_s)
