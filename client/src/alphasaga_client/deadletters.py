"""Dead letters: the entries the bus moved to ``<stream>:dlq`` with their error and
delivery count (docs/wire-format.md). Redriving re-publishes the original fields to the
source stream and removes the dead letter, in one MULTI/EXEC: never both copies lost,
never both kept."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from alphasaga_contracts import Streams
from alphasaga_contracts.envelope import CORRELATION_ID, MESSAGE_ID, TYPE
from alphasaga_shared.errors import InvalidRequest, NotFound
from alphasaga_shared.wire import as_text

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


async def dead_letter_streams(redis: aioredis.Redis, streams: Streams) -> list[str]:
    found = {
        (key.decode() if isinstance(key, bytes) else str(key))
        async for key in redis.scan_iter(match=f"{streams.namespace}:*:dlq", count=1000, _type="stream")
    }
    return sorted(found)


async def read_dead_letters(redis: aioredis.Redis, dlq_streams: list[str]) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for stream in dlq_streams:
        entries: Any = await redis.xrange(stream, "-", "+")
        letters.extend(DeadLetter(stream, eid.decode(), as_text(raw)) for eid, raw in entries)
    return letters


async def find(redis: aioredis.Redis, dlq_streams: list[str], entry_id: str) -> DeadLetter:
    matches: list[DeadLetter] = []
    for stream in dlq_streams:
        try:
            entries: Any = await redis.xrange(stream, entry_id, entry_id)
        except aioredis.ResponseError:
            raise InvalidRequest(f"{entry_id!r} is not a stream entry id (like 1714556400000-0)") from None
        matches.extend(DeadLetter(stream, eid.decode(), as_text(raw)) for eid, raw in entries)
    if not matches:
        raise NotFound(f"no dead letter {entry_id}")
    if len(matches) > 1:
        raise InvalidRequest(f"dead letter {entry_id} is in {len(matches)} streams: name the stream")
    return matches[0]


async def redrive(redis: aioredis.Redis, letter: DeadLetter) -> str:
    """Send the original message back to its source stream; returns its new entry id."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(letter.source_stream, letter.original)  # type: ignore[arg-type]
        pipe.xdel(letter.dlq_stream, letter.entry_id)
        new_id, _ = await pipe.execute()
    return new_id.decode() if isinstance(new_id, bytes) else str(new_id)


async def purge(redis: aioredis.Redis, letters: list[DeadLetter]) -> int:
    by_stream: dict[str, list[str]] = {}
    for letter in letters:
        by_stream.setdefault(letter.dlq_stream, []).append(letter.entry_id)
    removed = 0
    for stream, ids in by_stream.items():
        removed += int(await redis.xdel(stream, *ids))
    return removed
