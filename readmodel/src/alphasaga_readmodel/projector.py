"""The ``saga_summaries`` projection: one row per saga, for ``alphasaga status`` and
``alphasaga list``, and the only writer of that table.

The projector tails the global log in commit order (``EventStore.read_all``), folds each
saga a batch touched from its whole stream, and upserts the summaries and its own
position in one transaction. Because a row is a pure function of the saga's stream,
the table can be emptied and rebuilt from the log at any time (``rebuild``), folding a
saga twice is harmless, and an upsert never replaces a row folded from more events.
Several projectors may run (every orchestrator's, the process of its own, a rebuild):
an advisory lock lets one at a time take a batch. Of the background projectors, one works
at a time, the holder of a session lock (``run``), so that its cache of folded sagas stays
whole. Readers never project: they read the table, or wait for the projector
(``reader.SagaReader``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections import OrderedDict

from alphasaga_saga.aggregate import Saga
from alphasaga_saga.mapper import SagaMapper
from alphasaga_saga.streams import SAGA_PREFIX, saga_id_of_stream
from alphasaga_shared.eventstore import Conn, RecordedEvent

from .store import ReadStore, Resume
from .summaries import PROJECTION, SagaSummary, summarise, summary_of

log = logging.getLogger(__name__)

# Held by the session of the one background projector at work (``SagaProjector.run``).
ACTIVE_PROJECTOR = "projection:saga_summaries:active"

# Sagas in flight the projector keeps folded (``ALPHASAGA_PROJECTION_CACHE_SIZE``). A
# finished saga gets no more events, so it is never kept: the cache holds what is in
# flight, not history (docs/decisions/0017: about 20 KB an entry for a no-op saga).
CACHE_SIZE = 5_000


class SagaProjector:
    """Keeps ``saga_summaries`` up to date with the log."""

    def __init__(self, store: ReadStore, *, batch: int = 500, poll_ms: int = 200, cache_size: int = CACHE_SIZE) -> None:
        self.store = store
        self.events = store.events
        self.mapper = SagaMapper()
        self.batch = batch
        self.poll_s = poll_ms / 1000
        self.cache_size = cache_size
        # The aggregates this projector folded last, with their first and last times: a
        # batch's rows are exactly a saga's new events, so most sagas are folded forward
        # instead of from scratch. A gap in versions (another projector, a failed
        # transaction) falls back to a full fold.
        self._cache: OrderedDict[uuid.UUID, tuple[Saga, dt.datetime, dt.datetime]] = OrderedDict()
        self._lease: Conn | None = None  # the session whose lock makes this the active projector
        self._active = False

    async def run_once(self) -> int:
        """Project one batch of the log; returns how many events it read."""
        async with self.events.transaction(lock=PROJECTION) as conn:
            # Loaded after the lock: a projector that just committed has moved it on.
            position = await self.events.load_position(PROJECTION)
            rows = await self.events.read_all(position, limit=self.batch, prefix=SAGA_PREFIX, data_as_text=True)
            if not rows:
                return 0
            new_rows: dict[uuid.UUID, list[RecordedEvent]] = {}
            for r in rows:
                saga_id = saga_id_of_stream(r.stream_id)
                if saga_id is not None:
                    new_rows.setdefault(saga_id, []).append(r)
            if new_rows:
                await self._project(conn, new_rows)
            await self.events.save_position(PROJECTION, rows[-1].position, conn=conn)
        return len(rows)

    async def catch_up(self) -> int:
        """Project until the log is read to its committed end; returns the events read."""
        total = 0
        while True:
            n = await self.run_once()
            total += n
            if n < self.batch:
                return total

    def _fold_forward(
        self, saga_id: uuid.UUID, rows: list[RecordedEvent]
    ) -> tuple[Saga, dt.datetime, dt.datetime] | None:
        """The cached aggregate moved on by ``rows``; None when it must be folded afresh.
        A full fold reads the saga's whole stream, so the cache may already be past the
        rows of a later batch: nothing to do then."""
        cached = self._cache.pop(saga_id, None)
        if cached is None:
            if [r.version for r in rows] != list(range(1, len(rows) + 1)):
                return None
            # A saga whose whole stream so far is in this batch (a new one): no need to read it.
            try:
                saga = self.mapper.fold(saga_id, rows)
            except Exception:  # let the full fold report it
                return None
            assert saga is not None
            self._remember(saga_id, saga, rows[0].recorded_at, rows[-1].recorded_at)
            return saga, rows[0].recorded_at, rows[-1].recorded_at
        saga, started_at, updated_at = cached
        new = [r for r in rows if r.version > saga.version]
        if new and new[0].version != saga.version + 1:
            return None
        try:
            for row in new:
                saga = self.mapper.to_domain_event(saga_id, row).mutate(saga)
        except Exception:  # let the full fold report it
            return None
        if new:
            updated_at = new[-1].recorded_at
        self._remember(saga_id, saga, started_at, updated_at)
        return saga, started_at, updated_at

    def _remember(self, saga_id: uuid.UUID, saga: Saga, started_at: dt.datetime, updated_at: dt.datetime) -> None:
        if saga.terminal or self.cache_size <= 0:
            return  # nothing follows a terminal event: keeping it would only hold memory
        self._cache[saga_id] = (saga, started_at, updated_at)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    @property
    def cached(self) -> int:
        """How many sagas the cache holds."""
        return len(self._cache)

    async def rebuild(self) -> int:
        """Empty the table, forget the position and fold the whole log again, the archived
        sagas included; returns the number of sagas in the rebuilt table."""
        async with self.events.transaction(lock=PROJECTION) as conn:
            await self.store.clear_summaries(conn)
            await self.events.forget_position(PROJECTION, conn)
        self._cache.clear()
        await self._project_archived()
        await self.catch_up()
        return await self.store.count_summaries()

    async def _project_archived(self, page: int = 500) -> None:
        """Fold the archived sagas, which the log no longer holds, from the archive."""
        archive, after = self.store.archive, None
        while manifests := await archive.manifests(after=after, limit=page):
            after = manifests[-1].saga_id
            streams = await archive.saga_streams([m.saga_id for m in manifests])
            summaries = []
            for saga_id, rows in streams.items():
                saga = self.mapper.fold(saga_id, rows)
                assert saga is not None  # an archived saga has events (its manifest says how many)
                summaries.append(summarise(saga, rows))
            async with self.events.transaction(lock=PROJECTION) as conn:
                await self.store.upsert_summaries(conn, summaries)
                await self.store.mark_archived(conn, list(streams))

    async def run(self) -> None:
        """Project forever (a background task of the orchestrator), while this process holds
        the active projector's lock. Any projector may take a batch (each pass holds the
        projection's transaction lock); passes alternating between processes would each
        find their cache behind and fold sagas from their whole streams again."""
        from alphasaga_shared.loops import run_forever  # a reader of the list does not need it

        log.info("projecting saga summaries")

        async def one_pass() -> bool:
            if not await self._holds_lease():
                return False  # another orchestrator projects; look again after the poll
            return await self.run_once() >= self.batch

        try:
            await run_forever("projector", one_pass, lambda: asyncio.sleep(self.poll_s))
        finally:
            if self._lease is not None:
                self._lease.terminate()  # the lock goes with the session

    @property
    def active(self) -> bool:
        """Whether this projector's ``run`` holds the active projector's lock."""
        return self._active

    async def _holds_lease(self) -> bool:
        lease = self._lease
        if lease is not None and lease.is_closed():  # the session was cut: the lock went with it
            lease, self._lease, self._active = None, None, False
        if lease is None:
            lease = self._lease = await self.events.session(application_name="alphasaga-projector")
        if not self._active:
            self._active = await self.events.try_session_lock(lease, ACTIVE_PROJECTOR)
            if self._active:
                log.info("this process now projects saga summaries")
        return self._active

    async def _project(self, conn: Conn, new_rows: dict[uuid.UUID, list[RecordedEvent]]) -> None:
        summaries: list[SagaSummary] = []
        missed: list[uuid.UUID] = []
        for saga_id, rows in new_rows.items():
            folded = self._fold_forward(saga_id, rows)
            if folded is None:
                missed.append(saga_id)
            else:
                summaries.append(summary_of(*folded))
        if missed:
            for saga_id, resume in (await self.store.resume_points(conn, missed)).items():
                try:
                    saga, started_at, updated_at = self._resumed(saga_id, resume)
                except Exception as exc:  # one unreadable saga must not stop the projection
                    log.error("saga %s cannot be folded, left out of saga_summaries: %s", saga_id, exc)
                    continue
                self._remember(saga_id, saga, started_at, updated_at)
                summaries.append(summary_of(saga, started_at, updated_at))
        await self.store.upsert_summaries(conn, summaries)

    def _resumed(self, saga_id: uuid.UUID, resume: Resume) -> tuple[Saga, dt.datetime, dt.datetime]:
        """A saga the cache does not hold, folded from its snapshot (if any) and the events
        after it, with its first and last times: a long saga costs its state, not its log."""
        snap, rows = resume.snapshot, resume.rows
        saga = None if snap is None else self.mapper.from_snapshot(saga_id, snap.version, snap.type, snap.state)
        for row in rows:
            saga = self.mapper.to_domain_event(saga_id, row).mutate(saga)
        assert saga is not None  # a resume point has a snapshot or events
        if snap is None:
            return saga, rows[0].recorded_at, rows[-1].recorded_at
        if snap.started_at is None or snap.taken_at is None:
            raise ValueError(f"its snapshot at version {snap.version} has no events under it")
        return saga, snap.started_at, rows[-1].recorded_at if rows else snap.taken_at
