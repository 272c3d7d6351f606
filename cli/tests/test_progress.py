"""The progress view of a DAG's saga: a fanned-out step's line says what it fanned out
over, and each branch gets a line of its own."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from alphasaga_cli.progress import Progress
from alphasaga_client.timetravel import Frame
from alphasaga_shared.eventstore import RecordedEvent

AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def frame(n: int, event: str, **data: Any) -> Frame:
    row = RecordedEvent(n, "saga-x", n, uuid.uuid4(), f"alphasaga_orchestrator.saga:Saga.{event}", data, {}, n, AT)
    return Frame(n, row, {"state": "RUNNING"}, [])


def test_a_fan_out_gives_each_branch_a_line_and_says_what_it_went_over() -> None:
    progress = Progress(uuid.uuid4())
    progress.apply(frame(1, "Started"), ["reasoning", "ml", "select"])
    lines = progress.apply(frame(2, "FannedOut", step="ml", items=["lightgbm", "linear"]))
    assert lines and "over lightgbm, linear" in lines[0]
    progress.apply(frame(3, "StepCommanded", step="ml[linear]", attempt=1))
    assert list(progress.steps) == ["reasoning", "ml", "select", "ml[lightgbm]", "ml[linear]"]
    assert progress.steps["ml[linear]"].status == "running"
    assert progress.steps["ml[lightgbm]"].status == "pending"
