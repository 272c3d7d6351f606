"""The express lane goes first within a process (docs/decisions/0023).

Each lane of a stream (``Streams.lanes``) is its own subscription with its own read loop,
so an express entry is read as soon as it is written. But a process's subscriptions share
one event loop, and a normal lane that works through a backlog in batches would still keep
an express batch waiting for CPU, for the database's connections, for the worker's
sandbox. So while this process has an express batch in hand (handled and committed), its
normal lanes start no batch and no next message of one: they give way. Express work never
waits for a normal lane here; a normal lane waits as long as express work keeps coming,
which is what a priority lane means.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from alphasaga_contracts import Priority, Streams

from ..wire import Delivery
from .chain import Batch, NextDelivery

T = TypeVar("T")


def is_express(stream: str) -> bool:
    return Streams.priority_of(stream) == Priority.EXPRESS


class LaneGate:
    def __init__(self) -> None:
        self._in_hand = 0
        self._express_lanes = 0  # express subscriptions of this process (``give_way``)
        self._clear = asyncio.Event()
        self._clear.set()

    @contextlib.asynccontextmanager
    async def express(self) -> AsyncIterator[None]:
        """Hold the normal lanes while an express batch is handled and committed."""
        self._in_hand += 1
        self._clear.clear()
        try:
            yield
        finally:
            self._in_hand -= 1
            if not self._in_hand:
                self._clear.set()

    async def in_turn(self, express: bool, work: Callable[[], Awaitable[T]]) -> T:
        """A batch of a lane (both transports): an express one holds the normal lanes while
        it is handled and committed; a normal one waits for its turn first."""
        if express:
            async with self.express():
                return await work()
        await self.turn()
        return await work()

    def give_way(self, stream: str) -> GiveWay | None:
        """The delivery middleware of ``stream``'s chain: none on an express lane, which
        each subscription's chain asks for, so the gate knows whether it has any."""
        if is_express(stream):
            self._express_lanes += 1
            return None
        return GiveWay(self)

    async def turn(self) -> None:
        """A normal lane's turn: first a pass of the event loop, so that an express read that
        has arrived is taken in, then until no express batch is in hand. The pass only where
        this process reads an express lane: without one, no read can arrive to take in, and
        the passes were two of the nine the loop made per message (docs/benchmarks.md, jetstream)."""
        if self._express_lanes:
            await asyncio.sleep(0)
        while self._in_hand:
            await self._clear.wait()


class GiveWay:
    """A delivery middleware of the normal lanes: each message waits for its turn."""

    def __init__(self, gate: LaneGate) -> None:
        self.gate = gate

    async def __call__(self, batch: Batch, d: Delivery, call_next: NextDelivery) -> None:
        await self.gate.turn()
        await call_next(batch, d)
