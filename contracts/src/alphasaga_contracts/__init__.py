"""AlphaSaga contracts: every message between services, and the stream names.

This package is the only thing services share about each other.
"""

from . import research, saga, steps
from .envelope import Message, UnknownMessageType, message_class, registered_types
from .streams import DEFAULT_NAMESPACE, WORKERS, Service, Streams

__all__ = [
    "DEFAULT_NAMESPACE",
    "WORKERS",
    "Message",
    "Service",
    "Streams",
    "UnknownMessageType",
    "message_class",
    "registered_types",
    "research",
    "saga",
    "steps",
]
