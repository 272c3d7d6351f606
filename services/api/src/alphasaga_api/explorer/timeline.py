"""The saga page's Gantt chart, from the saga's own events: a bar per step attempt and per
compensation, the compensation phase as a band. Pure: rows in, geometry out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alphasaga_client.timeline import attempts
from alphasaga_client.timetravel import event_name
from alphasaga_shared.eventstore import RecordedEvent

_UNDONE = {"StepCompensated": "compensated", "CompensationAttemptFailed": "failed", "CompensationFailed": "failed"}
_PHASE_ENDS = frozenset({"RolledBack", "CompensationFailed", "Completed"})


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    kind: str  # "step" or "compensation"
    outcome: str  # succeeded, failed, timed_out, running, compensated
    start: dt.datetime
    end: dt.datetime | None
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class Placed:
    """A bar where the chart draws it: x and width as fractions of the chart's width."""

    bar: Bar
    x: float
    width: float


@dataclass(frozen=True, slots=True)
class Gantt:
    placed: list[Placed]
    span_s: float
    phase: tuple[float, float] | None  # the compensation phase, as fractions of the width


def bars(rows: Sequence[RecordedEvent]) -> list[Bar]:
    """Every step attempt and every compensation, in the order they began."""
    out = [Bar(f"{a.step} #{a.attempt}", "step", a.outcome, a.started_at, a.ended_at, a.error) for a in attempts(rows)]
    undoing: dict[str, int] = {}
    for row in rows:
        name, step = event_name(row.type), str(row.data.get("step"))
        if name == "CompensationCommanded":
            undoing[step] = len(out)
            out.append(Bar(f"undo {step}", "compensation", "running", row.recorded_at, None))
        elif name in _UNDONE and step in undoing:
            begun = out[undoing.pop(step)]
            ended = Bar(begun.label, begun.kind, _UNDONE[name], begun.start, row.recorded_at, row.data.get("error"))
            out[out.index(begun)] = ended
    return sorted(out, key=lambda b: b.start)


def gantt(rows: Sequence[RecordedEvent], now: dt.datetime) -> Gantt:
    """The bars placed on one time axis, from the first event to the last (or ``now``,
    while something still runs)."""
    found = bars(rows)
    if not rows:
        return Gantt([], 0.0, None)
    t0 = rows[0].recorded_at
    running = any(b.end is None for b in found)
    t1 = max(now if running else rows[-1].recorded_at, t0 + dt.timedelta(milliseconds=1))
    span = (t1 - t0).total_seconds()

    def at(t: dt.datetime) -> float:
        return min(max((t - t0).total_seconds() / span, 0.0), 1.0)

    placed = [Placed(b, at(b.start), max(at(b.end or t1) - at(b.start), 0.002)) for b in found]
    return Gantt(placed, span, _phase(rows, at))


def _phase(rows: Sequence[RecordedEvent], at: Callable[[dt.datetime], float]) -> tuple[float, float] | None:
    begun = next((r.recorded_at for r in rows if event_name(r.type) == "CompensationStarted"), None)
    if begun is None:
        return None
    ended = next((r.recorded_at for r in rows if event_name(r.type) in _PHASE_ENDS and r.recorded_at >= begun), None)
    start = at(begun)
    return start, (at(ended) if ended else 1.0) - start


def seconds(value: float | None) -> str:
    """A duration as people read it: 840 ms, 3.2 s, 2 min 5 s."""
    if value is None:
        return "running"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"
