"""What an operator does besides sagas: dead letters (read, redrive, purge) and the health
checks a front end's readiness is made of. redis-py's dead-letter helpers load only when
a command uses them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .core import Core, text_of

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from .deadletters import DeadLetter


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    latency_ms: float
    error: str | None = None


class DeadLetters(Core):
    async def dead_letters(self, stream: str | None = None) -> list[DeadLetter]:
        from . import deadletters as dl

        redis = await self.redis()
        return await dl.read_dead_letters(redis, await self._dead_letter_streams(redis, stream))

    async def dead_letter(self, entry_id: str, stream: str | None = None) -> DeadLetter:
        from . import deadletters as dl

        redis = await self.redis()
        return await dl.find(redis, await self._dead_letter_streams(redis, stream), entry_id)

    async def redrive(self, letter: DeadLetter) -> str:
        """Send a dead letter back to its source stream, unchanged; returns its new entry id."""
        from . import deadletters as dl

        return await dl.redrive(await self.redis(), letter)

    async def purge(self, letters: Sequence[DeadLetter]) -> int:
        """Delete exactly these dead letters; returns how many were deleted."""
        from . import deadletters as dl

        return await dl.purge(await self.redis(), list(letters))

    async def _dead_letter_streams(self, redis: aioredis.Redis, stream: str | None) -> list[str]:
        from . import deadletters as dl

        if stream:
            return [dl.dlq_name(stream, self.settings.streams)]
        return await dl.dead_letter_streams(redis, self.settings.streams)


@dataclass(frozen=True, slots=True)
class GroupLag:
    """A service's consumer group on its command stream: entries not yet delivered to it
    (None when Redis cannot tell), delivered but not acked, and its consumers."""

    service: str
    stream: str
    present: bool
    lag: int | None = None
    pending: int = 0
    consumers: int = 0


class Health(Core):
    async def checks(self) -> dict[str, Probe]:
        """Redis, PostgreSQL and each service's consumer group on its command stream, each
        with how long it took: what a front end's readiness is made of."""
        out: dict[str, Probe] = {}

        async def probe(name: str, check: Callable[[], Any]) -> None:
            begun = time.perf_counter()
            try:
                await asyncio.wait_for(check(), 2.0)
                error = None
            except Exception as exc:  # the probe's answer, not a failure of the call
                error = f"{type(exc).__name__}: {exc}"[:200]
            out[name] = Probe(error is None, round((time.perf_counter() - begun) * 1000, 2), error)

        async def ping_redis() -> None:
            await (await self.redis()).ping()

        async def ping_postgres() -> None:
            await (await self.event_store()).ping()

        await probe("redis", ping_redis)
        await probe("postgres", ping_postgres)
        if out["redis"].ok:
            await probe("consumer_groups", self._groups_present)
        return out

    async def _groups_present(self) -> None:
        missing = [g.service for g in await self.group_lags() if not g.present]
        if missing:
            raise LookupError(f"no consumer group for {', '.join(missing)}")

    async def group_lags(self) -> list[GroupLag]:
        """Each service's consumer group on its command stream, as Redis reports it."""
        redis = await self.redis()
        from alphasaga_contracts import Service

        out = []
        for service in Service:
            stream = self.settings.streams.commands(service)
            try:
                groups: Any = await redis.xinfo_groups(stream)
            except Exception:  # no such stream yet: nobody has subscribed
                groups = []
            mine = next((g for g in groups if text_of(g["name"]) == str(service)), None)
            if mine is None:
                out.append(GroupLag(str(service), stream, present=False))
                continue
            lag = mine.get("lag")
            out.append(
                GroupLag(
                    str(service),
                    stream,
                    present=True,
                    lag=None if lag is None else int(lag),
                    pending=int(mine.get("pending") or 0),
                    consumers=int(mine.get("consumers") or 0),
                )
            )
        return out
