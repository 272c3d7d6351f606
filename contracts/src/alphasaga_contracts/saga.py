"""Commands to the orchestrator and the public saga lifecycle events."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from .envelope import Message
from .research import ResearchRequest

SagaState = Literal["RUNNING", "COMPENSATING", "COMPLETED", "ROLLED_BACK", "COMPENSATION_FAILED"]
TERMINAL_STATES: frozenset[str] = frozenset({"COMPLETED", "ROLLED_BACK", "COMPENSATION_FAILED"})


class StartResearch(Message):
    """Start a research saga. ``saga_id`` is optional: without it the orchestrator derives
    one from the message id, so a redelivered request never starts a second saga."""

    TYPE = "orchestrator.StartResearch"
    saga_id: UUID | None = None
    workflow: str = "research"
    request: ResearchRequest


class CancelSaga(Message):
    TYPE = "orchestrator.CancelSaga"
    saga_id: UUID
    reason: str = "cancelled by user"


class SagaEvent(Message):
    saga_id: UUID


class SagaStarted(SagaEvent):
    TYPE = "sagas.SagaStarted"
    workflow: str
    workflow_version: int
    request: ResearchRequest


class SagaStepCompleted(SagaEvent):
    TYPE = "sagas.StepCompleted"
    step: str
    attempt: int


class SagaStepFailed(SagaEvent):
    TYPE = "sagas.StepFailed"
    step: str
    attempt: int
    error: str
    will_retry: bool


class SagaCompensating(SagaEvent):
    TYPE = "sagas.SagaCompensating"
    reason: str
    steps_to_compensate: list[str]


class SagaCompleted(SagaEvent):
    TYPE = "sagas.SagaCompleted"
    outputs: dict[str, Any] = Field(description="The last step's outputs: verdict, metrics, artifact references")


class SagaRolledBack(SagaEvent):
    TYPE = "sagas.SagaRolledBack"
    reason: str


class SagaCompensationFailed(SagaEvent):
    TYPE = "sagas.SagaCompensationFailed"
    step: str
    error: str
