"""Reading sagas: status and the list from the read model (never projecting), a saga's
detail and events, time travel, the invariant check, and the global log."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alphasaga_contracts import SagaState
from alphasaga_readmodel.summaries import SagaFilter, SagaSummary
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.errors import Corrupt, InvalidRequest, NotFound
from alphasaga_shared.eventstore import START, RecordedEvent, outbox_stream

from .core import Core

_ID_PREFIX = re.compile(r"[0-9a-f-]{1,36}")

if TYPE_CHECKING:
    from alphasaga_shared.held import Held

    from .rundiff import RunDiff
    from .timeline import Attempt
    from .timetravel import Frame


@dataclass(frozen=True, slots=True)
class Replay:
    saga_id: uuid.UUID
    total_events: int
    frames: list[Frame]


@dataclass(frozen=True, slots=True)
class Check:
    saga_id: uuid.UUID
    events: int
    outbox: int
    violations: list[str]


@dataclass(frozen=True, slots=True)
class Detail:
    summary: SagaSummary
    attempts: list[Attempt]
    trace_id: str | None


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which rows of the global log ``log`` returns."""

    saga_id: uuid.UUID | None = None
    type_contains: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def __call__(self, row: RecordedEvent) -> bool:
        streams = {saga_stream(self.saga_id), outbox_stream(str(self.saga_id))} if self.saga_id else None
        return (
            (streams is None or row.stream_id in streams)
            and (self.type_contains is None or self.type_contains.lower() in row.type.lower())
            and (self.since is None or row.recorded_at >= self.since)
            and (self.until is None or row.recorded_at <= self.until)
        )


class Reads(Core):
    async def status(self, saga: str | uuid.UUID) -> SagaSummary:
        """The saga as its newest event leaves it: its row of the saga list, or, while the
        projector has not got there yet, its own events folded again (nothing is written).
        A saga id whose start is recorded but not started answers PENDING; one whose start
        the orchestrator refused answers REJECTED, with the reason as its failure."""
        saga_id = await self.resolve(saga)
        summary = await (await self.reader()).status(saga_id)
        if summary is None:
            raise NotFound(f"no saga {saga_id}")
        return summary

    async def held(self, saga_id: uuid.UUID) -> list[Held]:
        """The saga's messages that services hold through an outage of a store, oldest first
        (from Redis: shown while PostgreSQL is down; nothing is shown while Redis is)."""
        import json

        from alphasaga_shared.held import Held

        found = await (await self.transport()).held(self.settings.namespace, str(saga_id))
        return sorted((Held(**json.loads(v)) for v in found), key=lambda h: h.since)

    async def sagas(self, where: SagaFilter | None = None) -> list[SagaSummary]:
        """Sagas, newest first, from the saga list once it holds every saga event committed
        before the call (it waits for the projector; it never projects)."""
        where = where or SagaFilter()
        if where.state is not None and where.state not in set(SagaState):
            raise InvalidRequest(f"unknown state {where.state!r}: one of {', '.join(SagaState)}")
        if where.id_prefix is not None and not _ID_PREFIX.fullmatch(where.id_prefix):
            raise InvalidRequest("a saga id prefix is lowercase hex digits and dashes, at most 36")
        return await (await self.reader()).sagas(where)

    async def state_counts(self) -> dict[str, int]:
        """How many sagas are in each state, once the saga list holds every saga event
        committed before the call."""
        reader = await self.reader()
        await reader.caught_up()
        return await reader.store.state_counts()

    async def detail(self, saga: str | uuid.UUID) -> Detail:
        """The saga's row of the list, each step attempt with its duration, and its trace id:
        its events are read once, and folded when the row is behind them."""
        from .timeline import attempts, trace_id

        saga_id = await self.resolve(saga)
        rows = await (await self.saga_store()).events_of(saga_id)
        summary = await (await self.reader()).status(saga_id, rows)
        if summary is None:
            raise NotFound(f"no saga {saga_id}")
        return Detail(summary, attempts(rows), trace_id(saga_id, rows))

    async def events(self, saga: str | uuid.UUID, *, after_version: int = 0) -> list[RecordedEvent]:
        """The saga's own events, oldest first."""
        saga_id = await self.resolve(saga)
        return await (await self.saga_store()).events_of(saga_id, after_version=after_version)

    async def replay(
        self,
        saga: str | uuid.UUID,
        *,
        to: int | None = None,
        at: dt.datetime | None = None,
        from_archive: bool = False,
    ) -> Replay:
        """Time travel: the saga's events up to the ``to``-th and no later than ``at``, each
        with the state after it and what it changed; with ``from_archive``, the archived
        copy's (an archived saga's events are read from the archive anyway)."""
        from .timetravel import ReplayError, frames, select

        saga_id = await self.resolve(saga)
        rows = await (await self.saga_store()).events_of(saga_id, archived=from_archive)
        if from_archive and not rows:
            raise NotFound(f"saga {saga_id} is not archived")
        try:
            replayed = list(frames(saga_id, select(rows, to=to, at=at), (await self.reader()).mapper))
        except ReplayError as exc:
            raise Corrupt(str(exc)) from None
        return Replay(saga_id, len(rows), replayed)

    async def check(self, saga: str | uuid.UUID) -> Check:
        """Fold the saga's events again and run the invariant checker over them and its outbox."""
        from alphasaga_saga.invariants import check_saga

        saga_id = await self.resolve(saga)
        store = await self.saga_store()
        rows, outbox = await store.events_of(saga_id), await store.outbox_of(saga_id)
        mapper = (await self.reader()).mapper
        try:
            violations = check_saga(saga_id, rows, outbox, fold=mapper.fold)
        except Exception as exc:  # a checker that chokes on a broken history has found a problem
            violations = [f"the invariant checker failed on this history: {type(exc).__name__}: {exc}"]
        return Check(saga_id, len(rows), len(outbox), violations)

    async def log(
        self, wanted: Callable[[RecordedEvent], bool] = LogFilter(), *, follow: bool = False, poll_s: float = 0.25
    ) -> AsyncIterator[RecordedEvent]:
        """The global log in commit order (never skipping a late commit): every saga event and
        outgoing message that ``wanted`` accepts; with ``follow``, waits for new commits."""
        events = await self.event_store()
        position, batch = START, 1000
        while True:
            rows = await events.read_all(position, limit=batch)
            for row in rows:
                position = row.position
                if wanted(row):
                    yield row
            if len(rows) < batch:
                if not follow:
                    return
                await asyncio.sleep(poll_s)

    async def rebuild_saga_list(self) -> int:
        """Empty the saga list and fold the whole log into it again; returns its sagas. An
        operator's repair, not a read: it writes the table, beside the projector."""
        from alphasaga_readmodel.projector import SagaProjector

        return await SagaProjector(await self.saga_store()).rebuild()

    async def diff(self, a: str | uuid.UUID, b: str | uuid.UUID) -> RunDiff:
        """Where two sagas' logs part, and step by step what differs (``rundiff``)."""
        from .rundiff import Side, compare

        store = await self.saga_store()
        sides = []
        for saga in (a, b):
            saga_id = await self.resolve(saga)
            sides.append(Side(saga_id, await store.events_of(saga_id), await store.outbox_of(saga_id)))
        return compare(sides[0], sides[1])

    def workflow_steps(self, workflow: str, version: int) -> list[str]:
        """The step names of a workflow version, as the orchestrator knows it
        (``ALPHASAGA_WORKFLOWS``); empty when it is unknown here."""
        from alphasaga_saga.workflow import WorkflowFileError, WorkflowSettings, load_workflows

        try:
            return [st.name for st in load_workflows(WorkflowSettings().workflows).get(workflow, version).steps]
        except (WorkflowFileError, KeyError):
            return []
