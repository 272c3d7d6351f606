"""Stream names, from one place. ``<namespace>:<cmd|evt>:<owner>``; dead letters on
``<stream>:dlq``. The owners are the services and the step kinds' queues (``steps.KINDS``).

Every command stream and every worker's reply stream has an express lane beside it,
``<stream>:express``, which its reader serves apart from the normal one, so that a saga
submitted with ``Priority.EXPRESS`` never waits behind a backlog of normal ones
(docs/decisions/0023)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_NAMESPACE = "alphasaga"
EXPRESS_SUFFIX = ":express"


class Priority(StrEnum):
    """A saga's lane: every command and reply of an ``express`` saga travels on the express
    streams (``Streams.lane``)."""

    NORMAL = "normal"
    EXPRESS = "express"


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
    def lane(stream: str, priority: Priority) -> str:
        """``stream`` (a command or reply stream's normal lane) in ``priority``'s lane."""
        return stream + EXPRESS_SUFFIX if priority == Priority.EXPRESS else stream

    @staticmethod
    def lanes(stream: str) -> tuple[str, str]:
        """``stream``'s two lanes, the express one first (the order its reader subscribes in)."""
        return stream + EXPRESS_SUFFIX, stream

    @staticmethod
    def priority_of(stream: str) -> Priority:
        """The lane a command or reply stream is (a dead-letter stream is not one)."""
        return Priority.EXPRESS if stream.endswith(EXPRESS_SUFFIX) else Priority.NORMAL

    @staticmethod
    def normal_lane(stream: str) -> str:
        """The normal lane of ``stream``, whichever lane it is."""
        return stream.removesuffix(EXPRESS_SUFFIX)

    @staticmethod
    def dead_letters(stream: str) -> str:
        return f"{stream}:dlq"

    @staticmethod
    def source_of_dead_letters(dlq_stream: str) -> str:
        if not dlq_stream.endswith(":dlq"):
            raise ValueError(f"not a dead-letter stream: {dlq_stream!r}")
        return dlq_stream.removesuffix(":dlq")
