"""Durable deadlines coming due: every orchestrator polls ``saga_timers`` and decides on
each due deadline, including those that fell due while no orchestrator ran. Several
orchestrators may race; the inbox fires each deadline once."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from alphasaga_shared.loops import is_transient, run_forever

from .decide import Incoming, TimerFired
from .storage import SagaStorage

log = logging.getLogger(__name__)

Apply = Callable[[uuid.UUID, Incoming], Awaitable[None]]
# A deadline whose decision fails (a saga that cannot be folded, a bug) is tried again
# after this long, then twice as long, up to a minute: it must not hold up the others.
FAILED_TIMER_RETRY_S = 1.0
FAILED_TIMER_RETRY_MAX_S = 60.0


class Timers:
    def __init__(self, store: SagaStorage, apply: Apply, *, poll_s: float = 0.2, batch: int = 200) -> None:
        self.store = store
        self.apply = apply
        self.poll_s = poll_s
        self.batch = batch
        self._failing: dict[str, tuple[float, float]] = {}  # timer id -> (retry at, next delay)

    async def fire_due(self) -> int:
        """Decide on every deadline due now; returns how many were fired."""
        fired = 0
        now = time.monotonic()
        due_timers = await self.store.due_timers(self.batch)
        if len(due_timers) < self.batch:
            # Every due deadline is in hand: one failing here that is no longer due (fired by
            # another orchestrator, its saga moved on) is forgotten, so this stays bounded.
            due_ids = {TimerFired(t.saga_id, t.kind, t.step, t.attempt).message_id for t in due_timers}
            self._failing = {k: v for k, v in self._failing.items() if k in due_ids}
        for timer in due_timers:
            due = TimerFired(timer.saga_id, timer.kind, timer.step, timer.attempt)
            retry_at, delay = self._failing.get(due.message_id, (0.0, FAILED_TIMER_RETRY_S))
            if retry_at > now:
                continue
            try:
                await self.apply(due.saga_id, due)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("saga %s: deciding on %s failed; trying again in %.0f s", timer.saga_id, due, delay)
                self._failing[due.message_id] = (now + delay, min(delay * 2, FAILED_TIMER_RETRY_MAX_S))
                continue
            self._failing.pop(due.message_id, None)
            await self.store.drop_fired_timer(timer, due.message_id)
            fired += 1
        return fired

    async def run(self) -> None:
        async def one_pass() -> bool:
            return await self.fire_due() > 0

        await run_forever("timers", one_pass, lambda: asyncio.sleep(self.poll_s))
