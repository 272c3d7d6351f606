"""Stream names, from one place. ``<namespace>:<cmd|evt>:<owner>``; dead letters on
``<stream>:dlq``. The owners are the services and the step kinds' queues (``steps.KINDS``)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "alphasaga"


@dataclass(frozen=True, slots=True)
class Streams:
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        if not self.namespace or not self.namespace.isascii() or " " in self.namespace:
            raise ValueError(f"namespace must be non-empty ASCII without spaces: {self.namespace!r}")

    def commands(self, owner: str) -> str:
        """Commands *to* a service, or to a step kind's queue (``StepKind.queue``); many
        writers for the orchestrator's: it is the entry point."""
        return f"{self.namespace}:cmd:{owner}"

    def events(self, service: str) -> str:
        """Replies and events *from* a service; that service is the only writer."""
        return f"{self.namespace}:evt:{service}"

    @property
    def sagas(self) -> str:
        """Public saga lifecycle events, written by the orchestrator."""
        return f"{self.namespace}:evt:sagas"

    @staticmethod
    def dead_letters(stream: str) -> str:
        return f"{stream}:dlq"

    @staticmethod
    def source_of_dead_letters(dlq_stream: str) -> str:
        if not dlq_stream.endswith(":dlq"):
            raise ValueError(f"not a dead-letter stream: {dlq_stream!r}")
        return dlq_stream.removesuffix(":dlq")
