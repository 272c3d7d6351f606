"""Rate limits as Redis counters, shared by every replica: one counter per limit, caller and
fixed window, which expires with its window. All the keys are ``<namespace>:ratelimit:*``
and this module is the only one that touches them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


@dataclass
class RateLimiter:
    redis: Callable[[], Any]  # the client's connection, opened when first needed
    namespace: str
    clock: Callable[[], float] = time.time

    async def hit(self, limit_name: str, who: str, per_window: int) -> Verdict:
        """Count one request by ``who`` against ``per_window`` requests a minute."""
        now = self.clock()
        window = int(now // WINDOW_S)
        # Callers are hashed: an address or key id is not spelled out in Redis.
        ident = hashlib.sha256(who.encode()).hexdigest()[:24]
        key = f"{self.namespace}:ratelimit:{limit_name}:{ident}:{window}"
        client: aioredis.Redis = await self.redis()
        async with client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_S + 1)
            count, _ = await pipe.execute()
        if int(count) <= per_window:
            return Verdict(True)
        return Verdict(False, max(1, int((window + 1) * WINDOW_S - now) + 1))
