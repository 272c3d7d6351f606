"""What an operator does besides sagas: dead letters (read, redrive, purge) and the health
checks a front end's readiness is made of, on either transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .core import Core

if TYPE_CHECKING:
    from .deadletters import DeadLetter


@dataclass(frozen=True, slots=True)
class Probe:
    ok: bool
    latency_ms: float
    error: str | None = None


class DeadLetters(Core):
    async def dead_letters(self, stream: str | None = None) -> list[DeadLetter]:
        from . import deadletters as dl

        return await dl.read_dead_letters(await self.transport(), await self._dead_letter_streams(stream))

    async def dead_letter(self, entry_id: str, stream: str | None = None) -> DeadLetter:
        from . import deadletters as dl

        return await dl.find(await self.transport(), await self._dead_letter_streams(stream), entry_id)

    async def redrive(self, letter: DeadLetter) -> str:
        """Send a dead letter back to its source stream, unchanged; returns its new entry id."""
        from . import deadletters as dl

        return await dl.redrive(await self.transport(), letter)

    async def purge(self, letters: Sequence[DeadLetter]) -> int:
        """Delete exactly these dead letters; returns how many were deleted."""
        from . import deadletters as dl

        return await dl.purge(await self.transport(), list(letters))

    async def _dead_letter_streams(self, stream: str | None) -> list[str]:
        from . import deadletters as dl

        if stream:
            return [dl.dlq_name(stream, self.settings.streams)]
        return await (await self.transport()).dead_letter_streams(self.settings.namespace)


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

        async def ping_transport() -> None:
            await (await self.transport()).ping()

        async def ping_postgres() -> None:
            await (await self.event_store()).ping()

        transport = "jetstream" if self.settings.on_jetstream else "redis"
        await probe(transport, ping_transport)
        await probe("postgres", ping_postgres)
        if out[transport].ok:
            await probe("consumer_groups", self._groups_present)
        return out

    async def _groups_present(self) -> None:
        missing = [g.service for g in await self.group_lags() if not g.present]
        if missing:
            raise LookupError(f"no consumer group for {', '.join(missing)}")

    async def group_lags(self) -> list[GroupLag]:
        """Each service's consumer group on its command stream, as its transport reports it."""
        from alphasaga_contracts import Service

        log = await self.transport()
        out = []
        for service in Service:
            stream = self.settings.streams.commands(service)
            state = await log.group_state(stream, str(service))
            if state is None:
                out.append(GroupLag(str(service), stream, present=False))
                continue
            out.append(
                GroupLag(
                    str(service),
                    stream,
                    present=True,
                    lag=state.lag,
                    pending=state.pending,
                    consumers=state.consumers,
                )
            )
        return out
