"""Our stream names on JetStream (docs/wire-format.md, "On NATS JetStream").

A logical stream ``<ns>:<family>:<owner>`` (``contracts.Streams``) is the subject
``<ns>.<family>.<owner>`` in the JetStream stream ``<ns>_<family>``, one per family
(``cmd``, ``evt``); dead letters ``<stream>:dlq`` are ``<ns>.dlq.<family>.<owner>`` in
``<ns>_dlq``. Derived from the name alone, so a stream added to ``contracts`` (a step
kind's queue, an express lane) maps itself. A durable consumer per reading group and
stream: ``<group>__<family>_<owner>``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

DLQ = "dlq"
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_-]")
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_=/-]")


@dataclass(frozen=True, slots=True)
class Place:
    """Where a logical stream lives on JetStream."""

    stream: str  # the JetStream stream
    subject: str


def token(text: str) -> str:
    """``text`` as one subject token / part of a stream or consumer name."""
    return _NOT_IN_NAME.sub("_", text)


def family_stream(namespace: str, family: str) -> str:
    return f"{token(namespace)}_{token(family)}"


def place(name: str) -> Place:
    """The JetStream stream and subject of a logical stream name."""
    parts = name.split(":")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"not a stream name of the form <namespace>:<family>:<owner>: {name!r}")
    namespace, rest = parts[0], parts[1:]
    if rest[-1] == DLQ:
        rest = [DLQ, *rest[:-1]]
    for part in rest:
        if not part.isascii() or any(c in part for c in " *>\t\r\n"):
            raise ValueError(f"stream name {name!r} has a part that cannot be a subject: {part!r}")
    return Place(family_stream(namespace, rest[0]), ".".join([token(namespace), *rest]))


def family_subjects(namespace: str, family: str) -> str:
    return f"{token(namespace)}.{token(family)}.>"


def durable(group: str, name: str) -> str:
    """The durable consumer of ``group`` on logical stream ``name``."""
    return f"{token(group)}__{token('_'.join(name.split(':')[1:]))}"


def key(text: str) -> str:
    """``text`` as a key of a key-value bucket: kept when it is one, else its hash."""
    if text and not _NOT_IN_KEY.search(text):
        return text
    return "h-" + hashlib.sha256(text.encode()).hexdigest()[:40]
