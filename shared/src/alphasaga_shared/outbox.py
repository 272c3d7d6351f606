"""The event log is the outbox: outgoing messages are appended as rows of the stream
``outbox:<correlation id>`` in the same transaction as the decision that produced them,
and the relay publishes committed rows to Redis in commit order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence

import asyncpg

from alphasaga_contracts.envelope import (
    BODY,
    CAUSATION_ID,
    CORRELATION_ID,
    MESSAGE_ID,
    SCHEMA,
    TRACEPARENT,
    TYPE,
)

from . import metrics
from .eventstore import Conn, EventStore, JsonText, NewEvent, Position, RecordedEvent
from .wire import Outgoing

log = logging.getLogger(__name__)

RELAY_POSITION = "relay:outbox"
# One relay publishes at a time (the holder of this advisory lock); the others wait.
_RELAY_LOCK_KEY = "alphasaga-relay"


def outbox_stream(correlation_id: str) -> str:
    return f"outbox:{correlation_id}"


def outbox_events(outgoing: Sequence[Outgoing]) -> list[NewEvent]:
    """Rows to append for ``outgoing``; the message id doubles as the event id, so the
    same message can never be put in the outbox twice."""
    events: list[NewEvent] = []
    for out in outgoing:
        env = out.envelope
        events.append(
            NewEvent(
                type=env.type,
                data=JsonText(env.message.model_dump_json()),
                metadata={
                    "stream": out.stream,
                    MESSAGE_ID: env.message_id,
                    CORRELATION_ID: env.correlation_id,
                    CAUSATION_ID: env.causation_id,
                    TRACEPARENT: env.traceparent,
                    SCHEMA: str(env.message.SCHEMA_VERSION),
                },
                event_id=uuid.UUID(env.message_id) if _is_uuid(env.message_id) else uuid.uuid4(),
            )
        )
    return events


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def wire_fields(row: RecordedEvent) -> tuple[str, dict[str, str]]:
    """The stream and entry fields for an outbox row."""
    meta = row.metadata
    return meta["stream"], {
        MESSAGE_ID: meta[MESSAGE_ID],
        CORRELATION_ID: meta[CORRELATION_ID],
        CAUSATION_ID: meta.get(CAUSATION_ID, ""),
        TYPE: row.type,
        SCHEMA: meta.get(SCHEMA, "1"),
        TRACEPARENT: meta.get(TRACEPARENT, ""),
        BODY: row.data if isinstance(row.data, str) else json.dumps(row.data, separators=(",", ":")),
    }


class Relay:
    """Publishes committed outbox rows to Redis, then records its position.

    A crash after publishing and before recording re-publishes the same rows (same
    message ids) on restart: at least once, deduplicated by the receivers' inboxes.
    """

    def __init__(
        self, store: EventStore, redis: object, *, batch: int = 500, poll_ms: int = 50, save_every_ms: int = 100
    ) -> None:
        self.store = store
        self.redis = redis  # redis.asyncio.Redis; typed loosely to keep faststream out of here
        self.batch = batch
        self.poll_s = poll_ms / 1000
        # The position lives in memory and is saved at most this often: a crash
        # re-publishes what was sent since the last save, which receivers deduplicate.
        self.save_every_s = save_every_ms / 1000
        self._position: Position | None = None

        self._saved: Position | None = None
        self._saved_at = 0.0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A hint that new rows were committed (in-process); polling still runs."""
        self._wake.set()

    def _notified(self, *_: object) -> None:
        """NOTIFY from commit_decisions in any process: the same hint."""
        self._wake.set()

    async def publish_once(self) -> int:
        if self._position is None:
            self._position = self._saved = await self.store.load_position(RELAY_POSITION)
        rows = await self.store.read_all(self._position, limit=self.batch, outbox_only=True)
        if rows:
            pipe = self.redis.pipeline(transaction=False)  # type: ignore[attr-defined]
            for row in rows:
                stream, fields = wire_fields(row)
                pipe.xadd(stream, fields)
            await pipe.execute()
            if os.environ.get("ALPHASAGA_FAULT") == "relay_crash_after_publish":
                os._exit(137)  # fault injection for the crash test: published, position not saved
            self._position = rows[-1].position
            metrics.RELAYED.inc(len(rows))
            metrics.RELAY_LAG.set(max(0.0, time.time() - rows[-1].recorded_at.timestamp()))
        if self._position != self._saved and time.monotonic() - self._saved_at >= self.save_every_s:
            await self.save()
        return len(rows)

    async def save(self) -> None:
        if self._position is not None and self._position != self._saved:
            await self.store.save_position(RELAY_POSITION, self._position)
            self._saved, self._saved_at = self._position, time.monotonic()

    async def run(self) -> None:
        """Publish forever while holding the relay lock."""
        async with self.store.pool.acquire() as lock_conn:
            await self._take_lock(lock_conn)
            channel = f"alphasaga_outbox_{self.store.schema}"
            await lock_conn.add_listener(channel, self._notified)
            try:
                await self._publish_forever()
            finally:
                await self.save()
                await lock_conn.remove_listener(channel, self._notified)
                await lock_conn.execute("UNLISTEN *")
                # Pooled connections keep their session (see eventstore.store._keep_session).
                await lock_conn.execute("SELECT pg_advisory_unlock_all()")

    async def _publish_forever(self) -> None:
        log.info("relay is publishing the outbox")
        while True:
            try:
                published = await self.publish_once()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("relay pass failed, retrying: %s", exc)
                published = 0
                await asyncio.sleep(1)
            if published < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                self._wake.clear()

    async def _take_lock(self, conn: Conn) -> None:
        key = f"{_RELAY_LOCK_KEY}:{self.store.schema}"
        while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            await asyncio.sleep(1)


def main() -> None:
    """``python -m alphasaga_shared.outbox``: the relay alone (the orchestrator also runs one;
    only the holder of the relay lock publishes)."""
    from .runner import ServiceContext, run_service

    async def setup(ctx: ServiceContext) -> None:
        relay = Relay(
            ctx.store, await ctx.bus.connect(), batch=ctx.settings.relay_batch, poll_ms=ctx.settings.relay_poll_ms
        )
        ctx.background.append(relay.run)

    run_service("relay", setup)


if __name__ == "__main__":
    main()
