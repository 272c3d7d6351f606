"""Readers of the saga list. They never project: a status is the saga's row, or, while the
projector has not got to the saga's newest event yet, the saga folded from its own events
in memory (nothing is written); a list waits until the projector has passed every saga
event committed before it was asked for, as eventsourcing's ``ProjectionRunner.wait()``
does, and fails with a clear error when that takes longer than its timeout."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from alphasaga_shared.errors import Corrupt, Unavailable
from alphasaga_shared.eventstore import Position, RecordedEvent

from .store import ReadStore
from .summaries import PROJECTION, SagaFilter, SagaSummary, submission_summary, summarise

if TYPE_CHECKING:
    from alphasaga_saga.mapper import SagaMapper

# How long a list waits for the projector, and how often it looks where it has got to.
WAIT_TIMEOUT_S = 10.0
POLL_S = 0.02


class ProjectionBehind(Unavailable):
    """The projector did not get to where a reader needed it within the reader's timeout."""


class SagaReader:
    def __init__(self, store: ReadStore, *, timeout_s: float = WAIT_TIMEOUT_S, poll_s: float = POLL_S) -> None:
        self.store = store
        self._mapper: SagaMapper | None = None
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        # One read of the projector's position at a time, shared by every waiter in this
        # process: a server's many waiting requests cost one query per poll, not one each.
        self._position_read: asyncio.Future[Position] | None = None

    @property
    def mapper(self) -> SagaMapper:
        """Made on first use: a status or list whose rows are projected folds nothing, and
        the CLI then never loads the aggregate (eventsourcing)."""
        if self._mapper is None:
            from alphasaga_saga.mapper import SagaMapper

            self._mapper = SagaMapper()
        return self._mapper

    async def status(self, saga_id: uuid.UUID, rows: Sequence[RecordedEvent] | None = None) -> SagaSummary | None:
        """The saga as its newest event leaves it; for a saga id with no saga, what its
        outbox says (PENDING, REJECTED); None when there is neither. ``rows``, the saga's
        events if the caller has read them already, are folded instead of read again."""
        summary, latest = await self.store.summary_and_version(saga_id)
        if summary is not None and summary.version >= latest:
            return summary
        if latest > 0:
            rows = rows or await self.store.events_of(saga_id)
            try:
                saga = self.mapper.fold(saga_id, rows)
            except Exception as exc:  # a saga that does not fold: say so, with the way to look
                raise Corrupt(f"saga {saga_id} cannot be folded from its events: {exc}") from None
            assert saga is not None
            return summarise(saga, rows)
        return submission_summary(saga_id, await self.store.outbox_of(saga_id))

    async def sagas(self, where: SagaFilter, *, timeout_s: float | None = None) -> list[SagaSummary]:
        """The saga list, once it holds every saga event committed before this call."""
        await self.caught_up(timeout_s)
        return await self.store.summaries(where)

    async def caught_up(self, timeout_s: float | None = None) -> None:
        """Wait until the projector has passed the saga events committed so far."""
        head = await self.store.saga_log_head()
        if head is not None:
            await self.wait_for(head, timeout_s)

    async def wait_for(self, position: Position, timeout_s: float | None = None) -> None:
        """Wait until the projector has read the log up to ``position``; raises
        ``ProjectionBehind`` after ``timeout_s``."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (projected := await self._projected()) < position:
            if loop.time() >= deadline:
                raise ProjectionBehind(
                    f"the saga list did not catch up with the log within {timeout_s:g} s (projected up to"
                    f" {tuple(projected)}, the log is at {tuple(position)}): is a projector running? (an"
                    " orchestrator with ALPHASAGA_RUN_PROJECTOR=true, or python -m alphasaga_orchestrator.projection)"
                )
            await asyncio.sleep(self.poll_s)

    async def _projected(self) -> Position:
        reading = self._position_read
        if reading is None or reading.done():
            reading = self._position_read = asyncio.ensure_future(self.store.events.load_position(PROJECTION))
        return await asyncio.shield(reading)
