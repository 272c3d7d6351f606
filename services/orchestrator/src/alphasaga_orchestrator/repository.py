"""Sagas in and out of the saga store: rows through the saga's mapper
(``alphasaga_saga.mapper``), snapshots that bound the cost of rebuilding a long saga, and
the cache of sagas this process last committed."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from alphasaga_saga.aggregate import Saga
from alphasaga_saga.mapper import SagaMapper
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.eventstore import NewEvent

from .storage import SagaStorage, Snapshot


class SagaRepository:
    """Loads sagas (from the cache, their snapshot and the events after it) and turns new
    aggregate events into rows.

    The cache holds the sagas this process last committed, most recently used last. A saga
    is taken out while it is decided on and put back only after its commit succeeded, so
    what is here was true at some point. While no other writer has been seen, a cached saga
    is trusted without a read: if another orchestrator moved it on, the commit's guard
    refuses the stale decision and it is decided again from the store. For
    ``shared_window_s`` after such a conflict, cached sagas are instead moved on to the
    stored version, in the same one read that loads the uncached ones."""

    def __init__(
        self,
        store: SagaStorage,
        *,
        snapshot_every: int = 100,
        cache_size: int = 0,
        shared_window_s: float = 10.0,
    ) -> None:
        self.store = store
        self.mapper = SagaMapper()
        self.snapshot_every = snapshot_every
        self.cache_size = cache_size
        self.shared_window_s = shared_window_s
        self.cache: OrderedDict[uuid.UUID, Saga] = OrderedDict()
        self._last_conflict = -shared_window_s

    # --- the cache ---

    async def take_many(self, saga_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Saga | None]:
        """The sagas to decide on, taken out of the cache (``keep`` puts them back)."""
        known = {s: saga for s in saga_ids if (saga := self.cache.pop(s, None)) is not None}
        alone = time.monotonic() - self._last_conflict > self.shared_window_s
        if len(known) == len(saga_ids) and alone:
            return dict(known)
        return await self.load_many(saga_ids, known)

    def keep(self, saga: Saga) -> None:
        """Remember a saga as just committed; a finished one is not kept."""
        if saga.terminal or self.cache_size <= 0:
            return
        self.cache[saga.id] = saga
        self.cache.move_to_end(saga.id)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def conflict_seen(self) -> None:
        """Another writer moved a saga on: check cached sagas against the store for a while."""
        self._last_conflict = time.monotonic()

    # --- reading ---

    async def load_many(
        self, saga_ids: Sequence[uuid.UUID], known: dict[uuid.UUID, Saga] | None = None
    ) -> dict[uuid.UUID, Saga | None]:
        """Several sagas in one round trip. A saga in ``known`` is moved on by the events
        after its version, if any; any other is read from its snapshot and the events after."""
        known = known or {}
        sagas: dict[uuid.UUID, Saga | None] = {s: known.get(s) for s in saga_ids}
        for row in await self.store.load_rows(saga_ids, {s: saga.version for s, saga in known.items()}):
            if row.snapshot:
                sagas[row.saga_id] = self.mapper.from_snapshot(row.saga_id, row.version, row.type, row.data)
            else:
                sagas[row.saga_id] = self.mapper.event(row.saga_id, row.version, row.type, row.data).mutate(
                    sagas[row.saga_id]
                )
        return sagas

    async def load(self, saga_id: uuid.UUID) -> Saga | None:
        """One saga as the store holds it now (from its snapshot and the events after it)."""
        return (await self.load_many([saga_id]))[saga_id]

    # --- writing ---

    def to_new_events(self, pending: Sequence[Any], metadata: dict[str, Any]) -> list[NewEvent]:
        return self.mapper.to_new_events(pending, metadata)

    def due_for_snapshot(self, old_version: int, new_version: int) -> bool:
        n = self.snapshot_every
        return n > 0 and new_version // n > old_version // n

    def snapshot_of(self, saga: Saga) -> Snapshot:
        topic, state = self.mapper.snapshot(saga)
        return Snapshot(saga_stream(saga.id), saga.version, topic, state)
