"""The API's rate-limit counters in PostgreSQL (``rate_limits``, docs/decisions/0026): the
only code over that table. One upsert per request, atomic across the API's replicas; the
windows before the current one are deleted once a window by each process."""

from __future__ import annotations

import asyncpg


class PostgresCounters:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._swept = -1  # the newest window this process has deleted the older ones for

    async def count(self, bucket: str, window: int) -> int:
        """Count one hit in ``bucket``'s ``window``; returns its hits so far, this one included."""
        if window > self._swept:
            self._swept = window
            await self.pool.execute("DELETE FROM rate_limits WHERE window_no < $1", window)
        hits: int = await self.pool.fetchval(
            "INSERT INTO rate_limits (bucket, window_no, hits) VALUES ($1, $2, 1)"
            " ON CONFLICT (bucket, window_no) DO UPDATE SET hits = rate_limits.hits + 1 RETURNING hits",
            bucket,
            window,
        )
        return hits
