"""Rate limits shared by every replica: one counter per limit, caller and fixed window, in
Redis (``<namespace>:ratelimit:*`` keys, which expire with their window; this module is
the only one that touches them) or in PostgreSQL (``alphasaga_accounts.ratelimits``), where
a JetStream deployment has no Redis (docs/decisions/0026)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis

WINDOW_S = 60


class Counters(Protocol):
    async def count(self, bucket: str, window: int) -> int:
        """Count one hit in ``bucket``'s ``window``; returns its hits so far, this one included."""
        ...


@dataclass
class RedisCounters:
    redis: Callable[[], Any]  # the client's connection, opened when first needed
    namespace: str

    async def count(self, bucket: str, window: int) -> int:
        key = f"{self.namespace}:ratelimit:{bucket}:{window}"
        client: aioredis.Redis = await self.redis()
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_S + 1)
            count, _ = await pipe.execute()
        return int(count)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


@dataclass
class RateLimiter:
    counters: Counters
    clock: Callable[[], float] = time.time

    async def hit(self, limit_name: str, who: str, per_window: int) -> Verdict:
        """Count one request by ``who`` against ``per_window`` requests a minute."""
        now = self.clock()
        window = int(now // WINDOW_S)
        # Callers are hashed: an address or key id is not spelled out where counters are kept.
        ident = hashlib.sha256(who.encode()).hexdigest()[:24]
        if await self.counters.count(f"{limit_name}:{ident}", window) <= per_window:
            return Verdict(True)
        return Verdict(False, max(1, int((window + 1) * WINDOW_S - now) + 1))
