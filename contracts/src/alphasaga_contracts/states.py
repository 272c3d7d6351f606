"""A saga's states, in a module of their own so that a front end can name them without
loading the message models."""

from __future__ import annotations

from enum import StrEnum


class SagaState(StrEnum):
    """Where a saga is. RUNNING → COMPLETED; on a failure or a cancel COMPENSATING →
    ROLLED_BACK, or COMPENSATION_FAILED when an undo keeps failing (an operator's case)."""

    RUNNING = "RUNNING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    ROLLED_BACK = "ROLLED_BACK"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"

    @property
    def terminal(self) -> bool:
        """Nothing happens to the saga after this state."""
        return self in _TERMINAL


_TERMINAL = frozenset({SagaState.COMPLETED, SagaState.ROLLED_BACK, SagaState.COMPENSATION_FAILED})


class SubmissionState(StrEnum):
    """Where a saga id stands before its saga exists: PENDING (its start is recorded, the
    orchestrator has not started it yet), or REJECTED (the orchestrator refused to start it,
    and said why; nothing more comes for this id). The saga list holds started sagas only."""

    PENDING = "PENDING"
    REJECTED = "REJECTED"

    @property
    def terminal(self) -> bool:
        return self is SubmissionState.REJECTED


def is_terminal(state: str) -> bool:
    """Whether nothing more happens to a saga id in ``state`` (a saga's or a submission's)."""
    for kind in (SagaState, SubmissionState):
        if state in kind.__members__:
            return kind(state).terminal
    return False
