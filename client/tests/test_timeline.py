"""A saga's step attempts and trace id, read from its events (pure: rows made here)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from alphasaga_client.timeline import attempts, trace_id
from alphasaga_shared.eventstore import RecordedEvent

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def row(n: int, name: str, seconds: float, **data: Any) -> RecordedEvent:
    return RecordedEvent(
        n, "saga-x", n, uuid.uuid4(), f"alphasaga_orchestrator.saga:Saga.{name}", data, {}, n,
        T0 + dt.timedelta(seconds=seconds),
    )  # fmt: skip


def test_attempts_pair_each_command_with_its_end() -> None:
    rows = [
        row(1, "Started", 0, traceparent="00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"),
        row(2, "StepCommanded", 0, step="reasoning", attempt=1),
        row(3, "StepTimedOut", 2, step="reasoning", attempt=1),
        row(4, "StepCommanded", 2.5, step="reasoning", attempt=2),
        row(5, "StepSucceeded", 3.0, step="reasoning", attempt=2, outputs={}),
        row(6, "StepCommanded", 3.0, step="codegen", attempt=1),
        row(7, "StepFailed", 4.25, step="codegen", attempt=1, error_kind="invalid", error="bad code"),
        row(8, "StepCommanded", 4.5, step="codegen", attempt=2),
    ]
    found = [(a.step, a.attempt, a.outcome, a.duration_s, a.error) for a in attempts(rows)]
    assert found == [
        ("reasoning", 1, "timed_out", 2.0, None),
        ("reasoning", 2, "succeeded", 0.5, None),
        ("codegen", 1, "failed", 1.25, "bad code"),
        ("codegen", 2, "running", None, None),
    ]
    assert trace_id(uuid.uuid4(), rows) == "ab" * 16


def test_without_a_traceparent_the_trace_is_the_saga_ids_own() -> None:
    """As the orchestrator records it (``saga_trace_id``): the link to Jaeger works for a
    saga started without a trace too."""
    saga_id = uuid.uuid4()
    assert trace_id(saga_id, [row(1, "Started", 0, traceparent="")]) == saga_id.hex
    assert trace_id(saga_id, []) == saga_id.hex
