"""Retention: moving finished sagas' events to the archive under the deployment's policy
(``ALPHASAGA_RETENTION_HOT_DAYS``), what is archived and due, and checking the archived
copies against their manifests (docs/decisions/0018). The move itself and its checks are
the event store's archive (``alphasaga_shared.eventstore.archive``); the read model says
which sagas are due and keeps their rows, marked archived, in the same transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alphasaga_shared.errors import InvalidRequest, NotFound

from .core import Core

if TYPE_CHECKING:
    from alphasaga_shared.eventstore.archive import Manifest, Totals


@dataclass(frozen=True, slots=True)
class ArchiveRun:
    cutoff: dt.datetime
    sagas: int
    events: int
    outbox: int
    # Sagas the read model listed as due whose log does not end them before the cut: left hot.
    skipped: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class ArchiveStatus:
    hot_days: float | None
    cutoff: dt.datetime | None
    lag_seconds: float
    archived: Totals


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    sagas: int
    problems: list[str]


class Archiving(Core):
    def _hot_days(self, hot_days: float | None) -> float:
        days = hot_days if hot_days is not None else self.settings.retention_hot_days
        if days is None:
            raise InvalidRequest(
                "no retention policy: set ALPHASAGA_RETENTION_HOT_DAYS (days a finished saga stays hot) or pass one"
            )
        if days <= 0:
            raise InvalidRequest(f"a saga stays hot a positive number of days, not {days}")
        return days

    async def archive_run(
        self, *, hot_days: float | None = None, limit: int | None = None, now: dt.datetime | None = None
    ) -> ArchiveRun:
        """Move every saga that ended more than ``hot_days`` (the policy's by default) ago to
        the archive, up to ``limit`` sagas, ``archive_batch`` per transaction, the longest
        ended first. Each batch is all or nothing: moved, checked and marked in the read model."""
        # Loaded here, not with the client: the aggregate (eventsourcing) is a cost that a
        # status or a list from the command line should not pay.
        from alphasaga_saga.aggregate import ending_topics
        from alphasaga_shared.eventstore.archive import Archive, due_before

        cutoff = due_before(self._hot_days(hot_days), now)
        store = await self.saga_store()
        archive, events = Archive(store.events), store.events
        run = ArchiveRun(cutoff, 0, 0, 0, [])
        after: tuple[dt.datetime, uuid.UUID] | None = None
        ended = ending_topics()
        while limit is None or run.sagas < limit:
            size = self.settings.archive_batch if limit is None else min(self.settings.archive_batch, limit - run.sagas)
            async with events.transaction() as conn:
                await archive.lock(conn)  # chosen under the lock: no saga another run moved meanwhile
                due = await store.to_archive(cutoff, size, after, conn=conn)
                if not due:
                    break
                after = due[-1]
                moved = await archive.move(conn, [saga_id for _, saga_id in due], ended=ended, before=cutoff)
                await store.mark_archived(conn, [m.saga_id for m in moved])
            run = _counted(run, moved, {saga_id for _, saga_id in due})
        return run

    async def archive_status(self, *, hot_days: float | None = None, now: dt.datetime | None = None) -> ArchiveStatus:
        """The policy, how long the longest-waiting due saga has waited past it, and what the
        archive holds."""
        from alphasaga_shared.eventstore.archive import Archive, due_before

        days = hot_days if hot_days is not None else self.settings.retention_hot_days
        store = await self.saga_store()
        cutoff = None if days is None else due_before(self._hot_days(days), now)
        lag = 0.0 if cutoff is None else await store.archive_lag(cutoff)
        return ArchiveStatus(days, cutoff, lag, await Archive(store.events).totals())

    async def archive_verify(self, saga: str | uuid.UUID | None = None, *, sample: int | None = None) -> ArchiveCheck:
        """Check archived sagas against their manifests: one saga, a random ``sample``, or
        all of them (in pages)."""
        from alphasaga_shared.eventstore.archive import Archive

        archive = Archive((await self.saga_store()).events)
        if saga is not None:
            saga_id = await self.resolve(saga)
            manifest = await archive.manifest(saga_id)
            if manifest is None:
                raise NotFound(f"saga {saga_id} is not archived")
            return ArchiveCheck(1, await archive.verify([manifest]))
        if sample is not None:
            manifests = await archive.manifests(only=await archive.sample(sample))
            return ArchiveCheck(len(manifests), await archive.verify(manifests))
        checked, problems, after = 0, [], None
        while page := await archive.manifests(after=after):
            after = page[-1].saga_id
            checked += len(page)
            problems += await archive.verify(page)
        return ArchiveCheck(checked, problems)


def _counted(run: ArchiveRun, moved: list[Manifest], due: set[uuid.UUID]) -> ArchiveRun:
    skipped = due - {m.saga_id for m in moved}
    return ArchiveRun(
        run.cutoff,
        run.sagas + len(moved),
        run.events + sum(m.events for m in moved),
        run.outbox + sum(m.outbox for m in moved),
        [*run.skipped, *sorted(skipped)],
    )
