"""Dead letters: the entries the bus moved to ``<stream>:dlq`` with their error and
delivery count (docs/wire-format.md). Redriving re-publishes the original fields to the
source stream and removes the dead letter: on Redis in one MULTI/EXEC, never both copies
lost, never both kept; on JetStream the copy first, then the removal (a crash between
leaves the letter to redrive again; the receivers' guards drop a second copy)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from alphasaga_contracts import Streams
from alphasaga_contracts.envelope import CORRELATION_ID, MESSAGE_ID, TYPE
from alphasaga_shared.bus.transport import LogPort
from alphasaga_shared.errors import InvalidRequest, NotFound

from .messages import resolve_stream
from .timefmt import iso

DLQ_PREFIX = "dlq_"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dlq_stream: str
    entry_id: str
    fields: dict[str, str]

    @property
    def original(self) -> dict[str, str]:
        """The message as it was published (what a redrive sends again)."""
        return {k: v for k, v in self.fields.items() if not k.startswith(DLQ_PREFIX)}

    @property
    def source_stream(self) -> str:
        return self.fields.get("dlq_source_stream") or Streams.source_of_dead_letters(self.dlq_stream)

    @property
    def error(self) -> str:
        return self.fields.get("dlq_error", "")

    @property
    def delivery_count(self) -> int:
        try:
            return int(self.fields.get("dlq_delivery_count", "0"))
        except ValueError:
            return 0

    @property
    def at(self) -> dt.datetime | None:
        try:
            return dt.datetime.fromtimestamp(int(self.fields["dlq_at_ms"]) / 1000, dt.UTC)
        except (KeyError, ValueError):
            return None

    def as_json(self) -> dict[str, Any]:
        at = self.at
        return {
            "dlq_stream": self.dlq_stream,
            "entry_id": self.entry_id,
            "source_stream": self.source_stream,
            "source_id": self.fields.get("dlq_source_id"),
            "type": self.fields.get(TYPE),
            "message_id": self.fields.get(MESSAGE_ID),
            "correlation_id": self.fields.get(CORRELATION_ID),
            "delivery_count": self.delivery_count,
            "error": self.error,
            "group": self.fields.get("dlq_group"),
            "consumer": self.fields.get("dlq_consumer"),
            "dead_lettered_at": iso(at) if at else None,
            "fields": self.original,
        }


def dlq_name(stream: str, streams: Streams) -> str:
    """A dead-letter stream from its own name or its source's (short names allowed)."""
    name = resolve_stream(stream, streams)
    return name if name.endswith(":dlq") else Streams.dead_letters(name)


async def read_dead_letters(log: LogPort, dlq_streams: list[str]) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for stream in dlq_streams:
        letters.extend(DeadLetter(stream, eid, fields) for eid, fields in await _all(log, stream))
    return letters


async def _all(log: LogPort, stream: str) -> list[tuple[str, dict[str, str]]]:
    found: list[tuple[str, dict[str, str]]] = []
    while True:
        page = await log.entries(stream, after=found[-1][0] if found else None, count=1000)
        found.extend(page)
        if len(page) < 1000:
            return found


async def find(log: LogPort, dlq_streams: list[str], entry_id: str) -> DeadLetter:
    matches = [letter for letter in await read_dead_letters(log, dlq_streams) if letter.entry_id == entry_id]
    if not matches:
        raise NotFound(f"no dead letter {entry_id}")
    if len(matches) > 1:
        raise InvalidRequest(f"dead letter {entry_id} is in {len(matches)} streams: name the stream")
    return matches[0]


async def redrive(log: LogPort, letter: DeadLetter) -> str:
    """Send the original message back to its source stream; returns its new entry id."""
    return await log.redrive(letter.dlq_stream, letter.entry_id, letter.original)


async def purge(log: LogPort, letters: list[DeadLetter]) -> int:
    by_stream: dict[str, list[str]] = {}
    for letter in letters:
        by_stream.setdefault(letter.dlq_stream, []).append(letter.entry_id)
    removed = 0
    for stream, ids in by_stream.items():
        removed += await log.delete_entries(stream, ids)
    return removed
