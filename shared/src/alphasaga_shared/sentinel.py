"""Knowing when Redis forgot, rather than guessing (docs/decisions/0014).

Redis is the transport and PostgreSQL the source of truth, and a transport can forget: a
restart without persistence, a failover to a replica that had not received the last
writes, an AOF that loses its last second, an operator's FLUSHDB, eviction.

The relay keeps one key in Redis, ``<namespace>:sentinel``, whose value is the ``run_id``
of the Redis server it last published the unfinished sagas' outbox to. The key missing
(a flush, a restart without persistence, eviction) or naming another server (a restart,
with AOF or not, a failover) means that what was published may be gone: the relay
publishes every outbox row of every saga that has not ended again, and only then writes
the key. While it publishes, the key says so (``REPUBLISHING``), and it is written at the
end only if it is still there (``XX``): a relay that stopped half way, or a Redis that
forgot again meanwhile, leaves the key missing or unfinished, and the next check starts
over. Receivers deduplicate (the orchestrator's inbox is in PostgreSQL), so publishing
again is never wrong, only work.
"""

from __future__ import annotations

from typing import Any

REPUBLISHING = "republishing"


def sentinel_key(namespace: str) -> str:
    return f"{namespace}:sentinel"


class Sentinel:
    """The relay's view of the key (``redis`` is a ``redis.asyncio.Redis``)."""

    def __init__(self, redis: Any, namespace: str) -> None:
        self.redis = redis
        self.key = sentinel_key(namespace)

    async def forgotten(self) -> str | None:
        """Why what was published may be gone (one line), or None when it is not."""
        run_id = await self._run_id()
        seen = await self.redis.get(self.key)
        if seen is None:
            return "the sentinel key is missing (Redis restarted empty, was flushed, or evicted it)"
        seen = seen.decode() if isinstance(seen, bytes) else str(seen)
        if seen == REPUBLISHING:
            return "a re-publish was left unfinished"
        if seen != run_id:
            return f"Redis is another server or was restarted (run_id {run_id[:8]}, was {seen[:8]})"
        return None

    async def begin(self) -> None:
        await self.redis.set(self.key, REPUBLISHING)

    async def done(self) -> bool:
        """Record the re-publish as done; False when the key vanished meanwhile (Redis
        forgot again: start over)."""
        return bool(await self.redis.set(self.key, await self._run_id(), xx=True))

    async def _run_id(self) -> str:
        info = await self.redis.info("server")
        return str(info["run_id"])
