"""One saga's inputs (start, replies, timers) for the orchestrator's pure tests."""

from __future__ import annotations

import datetime as dt
import uuid

from alphasaga_contracts import Message, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator.decide import Context, Decision, TimerFired
from alphasaga_orchestrator.plan import Plan
from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_saga.aggregate import TimerKind
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS
from alphasaga_shared.wire import Outgoing
from tests.support import replies

SAGA = uuid.UUID("00000000-0000-4000-8000-000000000001")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CTX = Context(DEFAULT_WORKFLOWS, now=NOW)
_PLAN = Plan(SagaRepository(store=None), Streams("t"))  # type: ignore[arg-type]  # only addresses
RESEARCH = DEFAULT_WORKFLOWS.latest("research")


def wired(d: Decision, message_id: str, traceparent: str = "") -> list[Outgoing]:
    """A decision's messages as the committing adapter sends them, caused by ``message_id``."""
    return _PLAN.addressed(SAGA, d.saga, message_id, d, traceparent)


def kind_of(step: str) -> str:
    return RESEARCH.step(step).kind.name


def success(step: str, attempt: int = 1) -> Message:
    return replies.success(kind_of(step), SAGA, step, attempt)


def failure(step: str, attempt: int = 1, *, retryable: bool = False) -> Message:
    error_kind = "internal" if retryable else "invalid_input"
    return st.StepFailed(
        saga_id=SAGA,
        step=step,
        kind=kind_of(step),
        attempt=attempt,
        error_kind=error_kind,
        error="boom",
        retryable=retryable,
    )


def timer(kind: str, step: str, attempt: int) -> TimerFired:
    return TimerFired(SAGA, TimerKind(kind), step, attempt)


def compensation_failed(step: str, attempt: int = 1) -> Message:
    return replies.compensation_failed(kind_of(step), SAGA, step, attempt, "disk on fire")


def compensated(step: str, attempt: int = 1) -> Message:
    return replies.compensated(kind_of(step), SAGA, step, attempt)


def start() -> Message:
    return sg.StartResearch(saga_id=SAGA, request=ResearchRequest(dataset="sp500"))
