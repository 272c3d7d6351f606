"""What every part of ``AlphaSaga`` stands on: the settings, the connections (opened when
first needed, closed with the client), the read model, and finding a saga by its id or a
prefix of it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from alphasaga_readmodel.reader import SagaReader
from alphasaga_readmodel.store import ReadStore
from alphasaga_shared.config import Settings
from alphasaga_shared.errors import Ambiguous, InvalidRequest, NotFound

from .connections import connect_jetstream, connect_redis, connect_store, load_settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from alphasaga_accounts import Accounts
    from alphasaga_accounts.service import Clock
    from alphasaga_shared.bus.transport import LogPort
    from alphasaga_shared.eventstore import EventStore

MIN_PREFIX = 4
_HEX = frozenset("0123456789abcdef-")


@dataclass
class Core:
    settings: Settings = field(default_factory=load_settings)
    application_name: str = "alphasaga-client"
    # Database connections: a server answering many requests at once wants more than a CLI.
    pool_size: int = 4
    # Redis connections: a followed saga holds one while it is followed.
    redis_connections: int = 100
    _redis: aioredis.Redis | None = None
    _log: LogPort | None = None
    _jetstream: Any = None  # the JetStream bus behind ``_log``, closed with the client
    _events: EventStore | None = None
    _accounts: Accounts | None = None
    _reader: SagaReader | None = None
    _connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._log = None
        if self._jetstream is not None:
            await self._jetstream.stop()
            self._jetstream = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._events is not None:
            await self._events.close()
            self._events = None
            self._reader = None

    # --- connections ---

    async def redis(self) -> aioredis.Redis:
        if self._redis is None:  # checked again under the lock: the common case takes none
            async with self._connect_lock:
                if self._redis is None:
                    self._redis = await connect_redis(self.settings, max_connections=self.redis_connections)
        return self._redis

    async def transport(self) -> LogPort:
        """The transport, for publishing and reading streams as logs: Redis, or JetStream
        when ``ALPHASAGA_BROKER_URL`` is ``nats://`` (docs/decisions/0021)."""
        if self._log is None:
            if self.settings.on_jetstream:
                async with self._connect_lock:
                    if self._log is None:
                        self._jetstream = await connect_jetstream(self.settings)
                        self._log = self._jetstream
            else:
                from alphasaga_shared.bus.redis_log import RedisLog

                self._log = RedisLog(await self.redis(), self.settings)
        assert self._log is not None
        return self._log

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
            from alphasaga_accounts import Accounts

            events = await self.event_store()
            extra = {} if clock is None else {"clock": clock}
            self._accounts = await Accounts.open(events.pool, events.schema, **extra)
        return self._accounts

    async def saga_store(self) -> ReadStore:
        """The read model's tables and the reads of a saga's streams."""
        return (await self.reader()).store

    async def reader(self) -> SagaReader:
        if self._reader is None:
            self._reader = SagaReader(ReadStore(await self.event_store()))
        return self._reader

    async def connect(self, *, redis: bool = True, database: bool = True) -> None:
        """Open the connections now (a command that will need both fails before it acts);
        ``redis``: the transport's, whichever it is."""
        if redis:
            await self.transport()
        if database:
            await self.event_store()

    def requests_stream(self) -> str:
        """The orchestrator's command stream, where starts and cancels go. (The service names
        come with the message models: loaded here only when a request is sent.)"""
        from alphasaga_contracts import Service

        return self.settings.streams.commands(Service.ORCHESTRATOR)

    # --- finding a saga ---

    async def resolve(self, saga: str | uuid.UUID) -> uuid.UUID:
        """The saga named by a full id, or by a unique prefix of one (like git): a saga that
        runs or ran, or a saga id whose start is recorded or was refused."""
        store = await self.saga_store()
        if isinstance(saga, uuid.UUID):
            if await store.known(saga):
                return saga
            raise NotFound(
                f"no saga {saga}: {UNRECORDED}", hint=f"in schema {store.schema!r}: check ALPHASAGA_DATABASE_SCHEMA"
            )
        text = saga.strip().lower()
        try:
            saga_id = uuid.UUID(text)
        except ValueError:
            saga_id = None
        if saga_id is not None:
            return await self.resolve(saga_id)
        if len(text) < MIN_PREFIX or not all(c in _HEX for c in text):
            raise InvalidRequest(
                f"{text!r} is not a saga id (a UUID, or at least {MIN_PREFIX} of its first characters)"
            )
        found = await store.sagas_with_prefix(text)
        if len(found) > 1:
            raise Ambiguous(f"saga id prefix {text!r} is ambiguous: give more characters")
        if not found:
            raise NotFound(f"no saga {text}", hint=f"in schema {store.schema!r}: check ALPHASAGA_DATABASE_SCHEMA")
        return found[0]


# Why a saga id may be unknown: said wherever one is looked for and not found.
UNRECORDED = (
    "nothing recorded its start in PostgreSQL; a request sent straight to Redis (redis-cli,"
    " AlphaSaga.submit) is lost if Redis forgets it before the orchestrator reads it: submit it again"
)


def text_of(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def stream_tip(redis: aioredis.Redis, stream: str) -> str:
    """The id of the newest entry (``0-0`` for an empty or missing stream)."""
    newest: Any = await redis.xrevrange(stream, count=1)
    return newest[0][0].decode() if newest else "0-0"
