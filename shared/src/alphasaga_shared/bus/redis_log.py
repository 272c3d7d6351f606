"""Redis streams read and written as logs, with redis-py alone: the outbox relay's
publishing, and what operators and tests read (``transport.StreamLog``). The client uses
it without loading the consumer side (faststream)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ..entries import as_text
from ..held import held_key
from ..sentinel import Sentinel

if TYPE_CHECKING:  # the consumer side's module (metrics, tracing): loaded only where a group is described
    from ..config import Settings
    from .assembly import Entry, GroupState, Read


class RedisLog:
    def __init__(self, client: Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def publish_entries(self, entries: Sequence[Entry]) -> list[str]:
        """Entries already encoded, in one round trip; returns their entry ids."""
        if not entries:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for stream, fields in entries:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            ids = await pipe.execute()
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def forgetting(self, namespace: str) -> Sentinel:
        return Sentinel(self.client, namespace)

    async def ping(self) -> None:
        await self.client.ping()

    async def entries(self, stream: str, *, after: str | None = None, count: int = 1000) -> list[Entry]:
        raw: Any = await self.client.xrange(stream, f"({after}" if after else "-", "+", count=count)
        return [(eid.decode(), as_text(fields)) for eid, fields in raw]

    async def tip(self, stream: str) -> str:
        newest: Any = await self.client.xrevrange(stream, count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def delete_entries(self, stream: str, entry_ids: Sequence[str]) -> int:
        return int(await self.client.xdel(stream, *entry_ids)) if entry_ids else 0

    async def redrive(self, dlq_stream: str, entry_id: str, original: dict[str, str]) -> str:
        """The original message back on its source stream, and its dead letter gone, in one
        MULTI/EXEC; returns its new entry id."""
        source = self.settings.streams.source_of_dead_letters(dlq_stream)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(source, original)  # type: ignore[arg-type]
            pipe.xdel(dlq_stream, entry_id)
            new_id, _ = await pipe.execute()
        return new_id.decode() if isinstance(new_id, bytes) else str(new_id)

    async def read(self, cursors: dict[str, str], *, count: int, block_ms: int) -> list[Read]:
        reply: Any = await self.client.xread(cursors, count=count, block=block_ms)  # type: ignore[arg-type]
        return [
            (raw_stream.decode(), raw_id.decode(), as_text(raw))
            for raw_stream, entries in reply
            for raw_id, raw in entries
        ]

    async def held(self, namespace: str, saga: str) -> list[str]:
        found = await self.client.hgetall(held_key(namespace, saga))
        return [v.decode() if isinstance(v, bytes) else str(v) for v in found.values()]

    async def has_group(self, stream: str, group: str) -> bool:
        try:
            groups: Any = await self.client.xinfo_groups(stream)
        except ResponseError:  # no such stream yet: nobody has subscribed
            return False
        return any((g["name"].decode() if isinstance(g["name"], bytes) else g["name"]) == group for g in groups)

    async def group_state(self, stream: str, group: str) -> GroupState | None:
        try:
            groups: Any = await self.client.xinfo_groups(stream)
        except ResponseError:  # no such stream yet: nobody has subscribed
            return None
        for g in groups:
            if (g["name"].decode() if isinstance(g["name"], bytes) else g["name"]) == group:
                from .assembly import GroupState

                lag = g.get("lag")
                return GroupState(
                    lag=None if lag is None else int(lag),
                    pending=int(g.get("pending") or 0),
                    consumers=int(g.get("consumers") or 0),
                )
        return None

    async def dead_letter_streams(self, namespace: str) -> list[str]:
        client = self.client
        found = {
            (key.decode() if isinstance(key, bytes) else str(key))
            async for key in client.scan_iter(match=f"{namespace}:*:dlq", count=1000, _type="stream")
        }
        return sorted(found)
