"""``AlphaSaga``: the one way in. The CLI, the tests, the benchmarks and every other front
end call it; none of them holds SQL or Redis commands of its own.

Connections are opened when first needed and closed with the client, so that a command
that only reads the event store never needs Redis, and the other way round::

    async with AlphaSaga(settings) as client:
        submitted = await client.submit(ResearchRequest(dataset="sp500"))
        async for event in client.follow(submitted.saga_id):
            print(event.event.TYPE)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from alphasaga_contracts import SagaState, Service
from alphasaga_orchestrator.projection import SagaProjector
from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_orchestrator.sagastore import SagaFilter, SagaStore, SagaSummary, saga_stream
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import (
    START,
    ArtifactLink,
    ArtifactNotFound,
    ArtifactStore,
    EventStore,
    RecordedEvent,
    outbox_stream,
)

from .connections import connect_redis, connect_store, load_settings
from .errors import Ambiguous, Corrupt, InvalidRequest, InvalidTransition, NotFound
from .timetravel import Frame, ReplayError, frames, select

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from alphasaga_contracts import saga as sg
    from alphasaga_contracts.research import ResearchRequest
    from alphasaga_shared.wire import Envelope

    from .accounts import Accounts
    from .accounts.service import Clock
    from .deadletters import DeadLetter
    from .messages import Entry
    from .timeline import Attempt

MIN_PREFIX = 4


@dataclass(frozen=True, slots=True)
class Submitted:
    saga_id: uuid.UUID
    message_id: str
    entry_id: str
    # The lifecycle stream's newest entry before the request was sent: following from
    # here misses none of the saga's events.
    follow_from: str = "0-0"


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A public lifecycle event of a saga, with its entry id on the lifecycle stream (a
    cursor to resume from)."""

    entry_id: str
    event: sg.SagaEvent


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
class Probe:
    ok: bool
    latency_ms: float
    error: str | None = None


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


@dataclass
class AlphaSaga:
    settings: Settings = field(default_factory=load_settings)
    application_name: str = "alphasaga-client"
    # Database connections: a server answering many requests at once wants more than a CLI.
    pool_size: int = 4
    # Redis connections: a followed saga holds one while it is followed.
    redis_connections: int = 100
    _redis: aioredis.Redis | None = None
    _events: EventStore | None = None
    _accounts: Accounts | None = None
    _connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _catch_up_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _catch_ups_started: int = 0

    async def __aenter__(self) -> AlphaSaga:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._events is not None:
            await self._events.close()
            self._events = None

    # --- connections ---

    async def redis(self) -> aioredis.Redis:
        if self._redis is None:  # checked again under the lock: the common case takes none
            async with self._connect_lock:
                if self._redis is None:
                    self._redis = await connect_redis(self.settings, max_connections=self.redis_connections)
        return self._redis

    async def event_store(self) -> EventStore:
        if self._events is None:  # under the lock: callers that arrive together share one pool
            async with self._connect_lock:
                if self._events is None:
                    self._events = await connect_store(
                        self.settings, application_name=self.application_name, max_size=self.pool_size
                    )
        return self._events

    async def accounts(self, clock: Clock | None = None) -> Accounts:
        """Users, sessions, API keys and the audit log (their tables migrated on first use)."""
        if self._accounts is None:
            from .accounts import Accounts

            events = await self.event_store()
            extra = {} if clock is None else {"clock": clock}
            self._accounts = await Accounts.open(events.pool, events.schema, **extra)
        return self._accounts

    async def saga_store(self) -> SagaStore:
        return SagaStore(await self.event_store())

    async def connect(self, *, redis: bool = True, database: bool = True) -> None:
        """Open the connections now (a command that will need both fails before it acts)."""
        if redis:
            await self.redis()
        if database:
            await self.event_store()

    # --- acting on sagas ---

    async def submit(
        self,
        request: ResearchRequest,
        *,
        workflow: str = "research",
        saga_id: uuid.UUID | None = None,
        message_id: str | None = None,
    ) -> Submitted:
        """Publish a research request. The same ``message_id`` (an idempotency key) always
        names the same saga: without ``saga_id`` the orchestrator derives it from the id."""
        from alphasaga_contracts import saga as sg
        from alphasaga_shared.wire import envelope_for

        saga_id = saga_id or (sg.derived_saga_id(message_id) if message_id else uuid.uuid4())
        message = sg.StartResearch(saga_id=saga_id, workflow=workflow, request=request)
        env = envelope_for(message, correlation_id=str(saga_id), message_id=message_id)
        tip = await self.lifecycle_cursor()
        entry_id = await self._send(self.settings.streams.commands(Service.ORCHESTRATOR), env)
        return Submitted(saga_id, env.message_id, entry_id, tip)

    async def submit_many(self, requests: Sequence[ResearchRequest], *, workflow: str = "research") -> list[Submitted]:
        """Publish many research requests in one round trip (a campaign, a burst)."""
        from alphasaga_contracts import saga as sg
        from alphasaga_shared.wire import envelope_for

        tip = await self.lifecycle_cursor()
        envelopes = []
        for request in requests:
            saga_id = uuid.uuid4()
            message = sg.StartResearch(saga_id=saga_id, workflow=workflow, request=request)
            envelopes.append(envelope_for(message, correlation_id=str(saga_id)))
        stream = self.settings.streams.commands(Service.ORCHESTRATOR)
        async with (await self.redis()).pipeline(transaction=False) as pipe:
            for env in envelopes:
                pipe.xadd(stream, self._entry(env))  # type: ignore[arg-type]
            entry_ids = await pipe.execute()
        return [
            Submitted(uuid.UUID(env.correlation_id), env.message_id, _text(entry_id), tip)
            for env, entry_id in zip(envelopes, entry_ids, strict=True)
        ]

    async def cancel(self, saga: str | uuid.UUID, reason: str = "cancelled by user") -> Submitted:
        """Ask the orchestrator to compensate a running saga; refuses one that has ended."""
        from alphasaga_contracts import saga as sg
        from alphasaga_shared.wire import envelope_for

        saga_id = await self.resolve(saga)
        current = await (await self._repository()).load(saga_id)
        if current is not None and current.terminal:
            raise InvalidTransition(f"saga {saga_id} already ended {current.state}: nothing to cancel")
        env = envelope_for(sg.CancelSaga(saga_id=saga_id, reason=reason), correlation_id=str(saga_id))
        entry_id = await self._send(self.settings.streams.commands(Service.ORCHESTRATOR), env)
        return Submitted(saga_id, env.message_id, entry_id)

    async def publish(self, stream: str, envelope: Envelope) -> str:
        """Publish a validated message (``messages.build_envelope``) to ``stream``; returns
        the entry id."""
        from .messages import resolve_stream

        return await self._send(resolve_stream(stream, self.settings.streams), envelope)

    async def _send(self, stream: str, env: Envelope) -> str:
        return _text(await (await self.redis()).xadd(stream, self._entry(env)))  # type: ignore[arg-type]

    def _entry(self, env: Envelope) -> dict[str, str]:
        """The stream entry for ``env``, refused before anything is sent when it is larger
        than the services accept (``ALPHASAGA_MAX_ENTRY_BYTES``)."""
        from alphasaga_shared.wire import encode, entry_size

        fields = encode(env)
        size, limit = entry_size(fields), self.settings.max_entry_bytes
        if size > limit:
            raise InvalidRequest(f"{env.type} of {size:,} bytes is over the {limit:,}-byte limit: not sent")
        return fields

    # --- finding and reading sagas ---

    async def resolve(self, saga: str | uuid.UUID) -> uuid.UUID:
        """The saga named by a full id, or by a unique prefix of one (like git)."""
        store = await self.saga_store()
        if isinstance(saga, uuid.UUID):
            if await store.latest_version(saga):
                return saga
            raise NotFound(f"no saga {saga}", hint=f"in schema {store.schema!r}: check ALPHASAGA_DATABASE_SCHEMA")
        text = saga.strip().lower()
        try:
            saga_id = uuid.UUID(text)
        except ValueError:
            saga_id = None
        if saga_id is not None:
            return await self.resolve(saga_id)
        if len(text) < MIN_PREFIX or not all(c in "0123456789abcdef-" for c in text):
            raise InvalidRequest(
                f"{text!r} is not a saga id (a UUID, or at least {MIN_PREFIX} of its first characters)"
            )
        found = await store.sagas_with_prefix(text)
        if len(found) > 1:
            raise Ambiguous(f"saga id prefix {text!r} is ambiguous: give more characters")
        if not found:
            raise NotFound(f"no saga {text}", hint=f"in schema {store.schema!r}: check ALPHASAGA_DATABASE_SCHEMA")
        return found[0]

    async def status(self, saga: str | uuid.UUID) -> SagaSummary:
        """The saga's row of the saga list, caught up with the log first; folded again from
        its own events when a transaction still open elsewhere holds the log reader back."""
        saga_id = await self.resolve(saga)
        store = await self.saga_store()
        projector = SagaProjector(store)
        await self._catch_up(projector)
        summary = await store.summary(saga_id)
        if summary is None or summary.version < await store.latest_version(saga_id):
            try:
                summary = await projector.refresh(saga_id)
            except Exception as exc:  # a saga that does not fold: say so, with the way to look
                raise Corrupt(f"saga {saga_id} cannot be folded from its events: {exc}") from None
        if summary is None:
            raise NotFound(f"no saga {saga_id}")
        return summary

    async def sagas(self, where: SagaFilter | None = None) -> list[SagaSummary]:
        """Sagas, newest first, from the saga list caught up with the log."""
        where = where or SagaFilter()
        if where.state is not None and where.state not in set(SagaState):
            raise InvalidRequest(f"unknown state {where.state!r}: one of {', '.join(SagaState)}")
        store = await self.saga_store()
        await self._catch_up(SagaProjector(store))
        return await store.summaries(where)

    async def _catch_up(self, projector: SagaProjector) -> None:
        """Bring the saga list up to the log, one catch-up at a time in this client. The
        projector holds a connection under its lock and takes another: concurrent callers
        on one pool (a server's requests) would each hold one, waiting for the lock, until
        none is left for the holder. A caller that waited while another catch-up started
        and finished has nothing left to read: that one began after it asked."""
        ticket = self._catch_ups_started
        async with self._catch_up_lock:
            if self._catch_ups_started > ticket:
                return
            self._catch_ups_started += 1
            await projector.catch_up()

    async def detail(self, saga: str | uuid.UUID) -> Detail:
        """The saga's row of the list, each step attempt with its duration, and its trace id."""
        from .timeline import attempts, trace_id

        summary = await self.status(saga)
        rows = await (await self.saga_store()).events_of(summary.saga_id)
        return Detail(summary, attempts(rows), trace_id(rows))

    async def events(self, saga: str | uuid.UUID, *, after_version: int = 0) -> list[RecordedEvent]:
        """The saga's own events, oldest first."""
        saga_id = await self.resolve(saga)
        return await (await self.saga_store()).events_of(saga_id, after_version=after_version)

    async def replay(self, saga: str | uuid.UUID, *, to: int | None = None, at: dt.datetime | None = None) -> Replay:
        """Time travel: the saga's events up to the ``to``-th and no later than ``at``, each
        with the state after it and what it changed."""
        saga_id = await self.resolve(saga)
        rows = await (await self.saga_store()).events_of(saga_id)
        repo = await self._repository()
        try:
            replayed = list(frames(saga_id, select(rows, to=to, at=at), repo))
        except ReplayError as exc:
            raise Corrupt(str(exc)) from None
        return Replay(saga_id, len(rows), replayed)

    async def check(self, saga: str | uuid.UUID) -> Check:
        """Fold the saga's events again and run the invariant checker over them and its outbox."""
        from alphasaga_orchestrator.invariants import check_saga

        saga_id = await self.resolve(saga)
        store = await self.saga_store()
        rows, outbox = await store.events_of(saga_id), await store.outbox_of(saga_id)
        repo = await self._repository()
        try:
            violations = check_saga(saga_id, rows, outbox, fold=repo.fold)
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

    # --- following a saga ---

    async def lifecycle_cursor(self) -> str:
        """The lifecycle stream's newest entry id: following from it misses nothing of a saga
        whose request is sent afterwards."""
        return await _stream_tip(await self.redis(), self.settings.streams.sagas)

    async def follow(
        self, saga: str | uuid.UUID, *, after: str = "0-0", timeout_s: float | None = None
    ) -> AsyncIterator[Lifecycle]:
        """The saga's public lifecycle events as the relay publishes them (the stream
        ``<namespace>:evt:sagas``), from after the entry id ``after`` until the one that
        ends the saga. ``Submitted.follow_from`` is the place to start for a saga just
        submitted; an entry id already seen resumes. Raises ``TimeoutError`` after
        ``timeout_s`` without the end."""
        from alphasaga_contracts import saga as sg
        from alphasaga_contracts.envelope import CORRELATION_ID
        from alphasaga_shared.wire import MalformedMessage, as_text, decode

        saga_id = saga if isinstance(saga, uuid.UUID) else await self.resolve(saga)
        redis = await self.redis()
        stream, wanted, cursor = self.settings.streams.sagas, str(saga_id), after
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            reply: Any = await redis.xread({stream: cursor}, count=500, block=500)
            for _, entries in reply:
                for entry_id, raw in entries:
                    cursor = entry_id.decode()
                    fields = as_text(raw)
                    if fields.get(CORRELATION_ID) != wanted:
                        continue
                    try:
                        event = decode(fields).message
                    except MalformedMessage:
                        continue  # not ours to judge here: the stream has one writer, the relay
                    assert isinstance(event, sg.SagaEvent)
                    yield Lifecycle(cursor, event)
                    if event.is_terminal():
                        return
        raise TimeoutError(f"saga {saga_id} did not finish within {timeout_s:.0f}s")

    async def watch(
        self, saga: str | uuid.UUID, *, timeout_s: float | None = None, poll_s: float = 0.2
    ) -> AsyncIterator[Frame]:
        """The saga's own events as they commit, each with the state after it, until it
        ends. Raises ``TimeoutError`` after ``timeout_s`` without the end."""
        saga_id = saga if isinstance(saga, uuid.UUID) else await self.resolve(saga)
        store = await self.saga_store()
        repo = await self._repository()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        folded: Any = None
        number, previous = 0, dict[str, Any]()
        while True:
            if number == 0:
                await self._raise_if_rejected(store, saga_id)
            for row in await store.events_of(saga_id, after_version=number):
                number += 1
                try:
                    folded = repo.to_domain_event(saga_id, row).mutate(folded)
                except Exception as exc:
                    raise Corrupt(f"event {row.version} of saga {saga_id} cannot be folded: {exc}") from None
                frame = Frame.after(number, row, folded, previous)
                previous = frame.state
                yield frame
                if folded is not None and folded.terminal:
                    return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"saga {saga_id} is still {previous.get('state', 'PENDING')} after {timeout_s:.0f}s")
            await asyncio.sleep(poll_s)

    async def _raise_if_rejected(self, store: SagaStore, saga_id: uuid.UUID) -> None:
        for row in await store.outbox_of(saga_id):
            if row.type == "sagas.RequestRejected":
                raise InvalidRequest(f"refused by the orchestrator: {row.data.get('reason', '?')}")

    # --- artifacts ---

    @staticmethod
    def datasets() -> tuple[str, ...]:
        """The built-in datasets a request may name."""
        from alphasaga_contracts.research import BUILTIN_DATASETS

        return BUILTIN_DATASETS

    async def artifacts(self, saga: str | uuid.UUID) -> list[ArtifactLink]:
        saga_id = await self.resolve(saga)
        return await ArtifactStore((await self.event_store()).pool).list(saga_id)

    async def artifact(self, sha256: str) -> bytes:
        """An artifact's content, checked against its hash."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise InvalidRequest(f"{sha256!r} is not a SHA-256 (64 lowercase hex digits)")
        try:
            content = await ArtifactStore((await self.event_store()).pool).get(sha256)
        except ArtifactNotFound as exc:
            raise NotFound(str(exc)) from None
        if hashlib.sha256(content).hexdigest() != sha256:
            raise Corrupt(f"artifact {sha256} does not match its SHA-256")
        return content

    async def artifact_media_type(self, sha256: str) -> str:
        found = await ArtifactStore((await self.event_store()).pool).media_type(sha256)
        if found is None:
            raise NotFound(f"no artifact with sha256 {sha256}")
        return found

    # --- health ---

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
        redis = await self.redis()
        missing = []
        for service in Service:
            stream = self.settings.streams.commands(service)
            try:
                groups: Any = await redis.xinfo_groups(stream)
            except Exception:  # no such stream yet: nobody has subscribed
                groups = []
            if not any(_text(g["name"]) == str(service) for g in groups):
                missing.append(str(service))
        if missing:
            raise LookupError(f"no consumer group for {', '.join(missing)}")

    # --- dead letters (redis-py is loaded only by the commands that use Redis) ---

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

    # --- streams ---

    async def cursors(self, streams: Sequence[str], start: str = "$") -> dict[str, str]:
        """Where to start tailing each stream: ``$`` for entries added from now on, ``0``
        for all, or an entry id. Stream names may be short (``cmd:reasoning``)."""
        from .messages import resolve_stream

        names = [resolve_stream(s, self.settings.streams) for s in streams]
        redis = await self.redis()
        if start != "$":
            return dict.fromkeys(names, start)
        # "$" itself, re-read on every call, would miss entries added between two reads:
        # start from each stream's newest id instead.
        return {n: await _stream_tip(redis, n) for n in names}

    async def tail(self, cursors: dict[str, str], *, count: int = 100) -> AsyncIterator[Entry]:
        """Entries after ``cursors`` (see ``cursors``) as they arrive, decoded, read outside
        any consumer group: it never takes a message from a service."""
        from alphasaga_shared.wire import as_text

        from .messages import decode_entry

        redis = await self.redis()
        cursors = dict(cursors)
        while True:
            reply: Any = await redis.xread(cursors, count=count, block=1000)  # type: ignore[arg-type]
            for raw_stream, entries in reply:
                stream = raw_stream.decode()
                for raw_id, raw in entries:
                    cursors[stream] = raw_id.decode()
                    yield decode_entry(stream, cursors[stream], as_text(raw))

    # --- read models ---

    async def rebuild_saga_list(self) -> int:
        """Empty the saga list and fold the whole log into it again; returns its sagas."""
        return await SagaProjector(await self.saga_store()).rebuild()

    def workflow_steps(self, workflow: str, version: int) -> list[str]:
        """The step names of a workflow version, as the orchestrator knows it
        (``ALPHASAGA_WORKFLOWS``); empty when it is unknown here."""
        from alphasaga_orchestrator.settings import OrchestratorSettings
        from alphasaga_orchestrator.workflow import WorkflowFileError, load_workflows

        try:
            return [st.name for st in load_workflows(OrchestratorSettings().workflows).get(workflow, version).steps]
        except (WorkflowFileError, KeyError):
            return []

    async def _repository(self) -> SagaRepository:
        return SagaRepository(await self.saga_store())


def _text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def _stream_tip(redis: aioredis.Redis, stream: str) -> str:
    """The id of the newest entry (``0-0`` for an empty or missing stream)."""
    newest: Any = await redis.xrevrange(stream, count=1)
    return newest[0][0].decode() if newest else "0-0"
