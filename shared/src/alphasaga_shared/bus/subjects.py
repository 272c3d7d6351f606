"""Our stream names on JetStream (docs/wire-format.md, "On NATS JetStream").

A logical stream ``<ns>:<family>:<owner>`` (``contracts.Streams``) is the subject
``<ns>.<family>.<owner>`` in the JetStream stream ``<ns>_<family>``, one per family
(``cmd``, ``evt``); dead letters ``<stream>:dlq`` are ``<ns>.dlq.<family>.<owner>`` in
``<ns>_dlq``. ``:`` may be in a subject token, so an owner's own ``:`` (an express lane)
and ``.`` (a step kind's queue) pass through unchanged, and a subject maps back to its
name. Derived from the name alone, so a stream added to ``contracts`` maps itself. A
durable consumer per reading group and stream: ``<group>__<family>_<owner>``.
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
    """The JetStream stream and subject of a logical stream name. After the family, the
    name is one token (``:`` may be in a token, ``.`` splits it in more): the subject maps
    back to the name (``logical``)."""
    parts = name.split(":", 2)
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"not a stream name of the form <namespace>:<family>:<owner>: {name!r}")
    namespace, family, rest = parts
    if any(c in rest or c in family for c in " *>\t\r\n") or not rest.isascii():
        raise ValueError(f"stream name {name!r} cannot be a subject")
    if rest.endswith(":" + DLQ):
        return Place(family_stream(namespace, DLQ), f"{token(namespace)}.{DLQ}.{family}.{rest.removesuffix(':' + DLQ)}")
    return Place(family_stream(namespace, family), f"{token(namespace)}.{family}.{rest}")


def logical(namespace: str, subject: str) -> str:
    """The logical stream name of a subject of ``namespace`` (the inverse of ``place``)."""
    ns, family, rest = subject.split(".", 2)
    if ns != token(namespace):
        raise ValueError(f"subject {subject!r} is not in namespace {namespace!r}")
    if family == DLQ:
        source_family, source = rest.split(".", 1)
        return f"{namespace}:{source_family}:{source}:{DLQ}"
    return f"{namespace}:{family}:{rest}"


def family_subjects(namespace: str, family: str) -> str:
    return f"{token(namespace)}.{token(family)}.>"


def durable(group: str, name: str) -> str:
    """The durable consumer of ``group`` on logical stream ``name`` (a hash of the name is
    added when characters had to be replaced, so that two names cannot meet)."""
    rest = name.split(":", 1)[1]
    name_part = token(rest)
    if name_part != rest:
        name_part += "_" + hashlib.sha256(rest.encode()).hexdigest()[:8]
    return f"{token(group)}__{name_part}"


def key(text: str) -> str:
    """``text`` as a key of a key-value bucket: kept when it is one, else its hash."""
    if text and not _NOT_IN_KEY.search(text):
        return text
    return "h-" + hashlib.sha256(text.encode()).hexdigest()[:40]
