"""Commands to the orchestrator and the public saga lifecycle events."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import Field

from .campaign import CampaignSpec, ChildState
from .envelope import Message
from .research import ArtifactRef, ResearchRequest, Value
from .states import SagaState
from .streams import Priority
from .text import Text

# A workflow's name, as workflow files and the API's ?workflow= spell it.
WORKFLOW_NAME = r"^[a-z][a-z0-9_-]{0,63}$"


class Fork(Value):
    """Where a fork starts from: the source saga (and its version when forked), the step it
    runs again from, the outputs of the steps that step needs (reused, not run), and the
    values it changes in the saga's context (a dotted path: ``model_kind``,
    ``hypothesis.label_horizon``)."""

    saga_id: UUID
    version: int = Field(ge=1)
    from_step: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    reused: dict[str, dict[str, Any]]
    overrides: dict[str, Any] = {}


class StartResearch(Message):
    """Start a research saga. ``saga_id`` is optional: without it the orchestrator derives
    one from the message id, so a redelivered request never starts a second saga."""

    TYPE = "orchestrator.StartResearch"
    saga_id: UUID | None = None
    workflow: str = Field("research", pattern=WORKFLOW_NAME)
    workflow_version: int | None = Field(
        None, ge=1, description="The workflow's version to run; unset: its newest that is not a preview"
    )
    request: ResearchRequest
    fork: Fork | None = Field(None, description="Set by a fork (alphasaga fork): the steps it reuses")
    priority: Priority = Field(
        Priority.NORMAL,
        description="express: every command and reply of the saga travels on the express lanes (<stream>:express)",
    )
    parent: UUID | None = Field(
        None, description="Set by a campaign on its children: the campaign told when this saga ends"
    )


class StartCampaign(Message):
    """Start a research campaign (``campaign.CampaignSpec``): a parent saga that starts its
    children through the orchestrator's command stream, at most ``concurrency`` at once.
    ``saga_id`` is optional, as for ``StartResearch``."""

    TYPE = "orchestrator.StartCampaign"
    saga_id: UUID | None = None
    spec: CampaignSpec


class ChildSagaEnded(Message):
    """A campaign's child ended: sent by the orchestrator to itself, on its own event stream
    (``Streams.events("orchestrator")``, which nobody else may write), from the child's
    last decision. ``saga_id`` is the campaign's."""

    TYPE = "orchestrator.ChildSagaEnded"
    saga_id: UUID
    child_id: UUID
    state: ChildState
    error: str | None = None
    accepted: bool | None = None
    candidates: int = Field(1, ge=1)
    metrics: dict[str, float] = {}
    report: ArtifactRef | None = None
    chart: ArtifactRef | None = None


def derived_saga_id(message_id: str) -> UUID:
    """The saga a ``StartResearch`` without ``saga_id`` starts: a UUIDv5 of its message id in
    the URL namespace, so that a redelivered or retried request never starts a second saga."""
    return uuid5(NAMESPACE_URL, f"alphasaga-saga/{message_id}")


class CancelSaga(Message):
    TYPE = "orchestrator.CancelSaga"
    saga_id: UUID
    reason: Text = Field("cancelled by user", max_length=1000)


class SagaEvent(Message):
    # The state a saga is in once this event is published, for the events that end it.
    ENDS_IN: ClassVar[SagaState | None] = None

    saga_id: UUID

    @classmethod
    def is_terminal(cls) -> bool:
        return cls.ENDS_IN is not None and cls.ENDS_IN.terminal


class SagaStarted(SagaEvent):
    TYPE = "sagas.SagaStarted"
    workflow: str
    workflow_version: int
    request: ResearchRequest
    priority: Priority = Priority.NORMAL


class CampaignStarted(SagaEvent):
    TYPE = "sagas.CampaignStarted"
    spec: CampaignSpec


class CampaignTrialEnded(SagaEvent):
    """One of a campaign's children ended; ``done``/``running``/``failed`` are the campaign's
    progress after it."""

    TYPE = "sagas.CampaignTrialEnded"
    child_id: UUID
    trial: int
    state: ChildState
    done: int
    running: int
    failed: int


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
    ENDS_IN = SagaState.COMPLETED
    outputs: dict[str, Any] = Field(description="The last step's outputs: verdict, metrics, artifact references")


class SagaRolledBack(SagaEvent):
    TYPE = "sagas.SagaRolledBack"
    ENDS_IN = SagaState.ROLLED_BACK
    reason: str


class SagaCompensationFailed(SagaEvent):
    TYPE = "sagas.SagaCompensationFailed"
    ENDS_IN = SagaState.COMPENSATION_FAILED
    step: str
    error: str


class RequestRejected(SagaEvent):
    """A request the orchestrator refused: it started no saga, or changed none (an unknown
    workflow, a cancel of a saga that does not exist, a request that breaks its contract).
    Nothing more comes for this saga id after it."""

    TYPE = "sagas.RequestRejected"
    request_type: str = Field(description="The refused request's type, e.g. orchestrator.StartResearch")
    message_id: str
    reason: str

    @classmethod
    def is_terminal(cls) -> bool:
        return True


def terminal_event_types() -> frozenset[str]:
    """The types of the lifecycle events after which nothing more comes for a saga id: an
    outbox that holds one belongs to a saga (or a refused request) that has ended."""
    found: set[str] = set()
    pending: list[type[SagaEvent]] = [SagaEvent]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not SagaEvent and cls.is_terminal():
            found.add(cls.TYPE)
    return frozenset(found)
