"""The progress view of one saga: a line per step with its state, attempt and elapsed
time, moved on by each event as it commits (``AlphaSaga.watch``)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .timefmt import seconds

if TYPE_CHECKING:
    from alphasaga_client import Frame, SagaSummary


def _words(name: str) -> str:
    out = "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()
    return out or name


# How an event that names a step moves that step's line. Events the aggregate may gain
# later still show, under their own name.
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
    """The saga as its events so far left it, and one line per step."""

    saga_id: uuid.UUID
    steps: dict[str, StepLine] = field(default_factory=dict)
    state: str = "PENDING"
    failure: str | None = None
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    summary: SagaSummary | None = None  # read once the saga has ended: its verdict and metrics

    def apply(self, frame: Frame, step_names: list[str] | None = None) -> list[str]:
        """Move on by one event; returns the lines worth printing about it (a plain log).
        ``step_names``: the workflow's steps, shown pending until they run."""
        row = frame.row
        self.state = str(frame.state.get("state", self.state))
        self.failure = frame.state.get("failure")
        self.started_at = self.started_at or row.recorded_at
        self.updated_at = row.recorded_at
        if frame.event == "Started":
            for name in step_names or []:
                self.steps.setdefault(name, StepLine(name))
            return []
        step = row.data.get("step")
        if not isinstance(step, str):
            reason = row.data.get("reason")
            return [f"{_words(frame.event)}: {reason}"] if reason else []
        if frame.event == "FannedOut":  # a step of a DAG: a line per branch from now on
            return self._fanned_out(step, [str(i) for i in row.data.get("items") or []], row.recorded_at)
        line = self.steps.setdefault(step, StepLine(step))
        status, ends = _STEP_STATUS.get(frame.event, (_words(frame.event), False))
        if frame.event == "CompensationCommanded" or line.started is None:
            line.started, line.ended = row.recorded_at, None
        if ends:
            line.ended = row.recorded_at
        if isinstance(row.data.get("attempt"), int) and frame.event in _STEP_ATTEMPTS:
            line.attempt = row.data["attempt"]
        line.status = status
        if frame.event == "StepFailed" and row.data.get("error"):
            return [line.render(row.recorded_at) + f"  {row.data['error']}"]
        return [line.render(row.recorded_at)]

    def _fanned_out(self, step: str, items: list[str], at: dt.datetime) -> list[str]:
        line = self.steps.setdefault(step, StepLine(step))
        line.status, line.started, line.ended = f"over {', '.join(items)}", at, at
        for item in items:
            self.steps.setdefault(f"{step}[{item}]", StepLine(f"{step}[{item}]"))
        return [line.render(at)]

    def outcome(self) -> dict[str, Any]:
        """What ``submit --wait`` and ``watch`` print at the end (and as JSON)."""
        start, end = self.started_at, self.updated_at
        now = dt.datetime.now(dt.UTC)
        return {
            "saga_id": str(self.saga_id),
            "state": self.state,
            "failure": self.failure,
            "verdict": self.summary.verdict if self.summary else None,
            "metrics": self.summary.metrics if self.summary else None,
            "elapsed_s": (end - start).total_seconds() if start and end else None,
            "steps": [
                {"step": s.name, "status": s.status, "attempt": s.attempt, "elapsed_s": s.elapsed(end or now)}
                for s in self.steps.values()
            ],
        }
