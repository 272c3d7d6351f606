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
from dataclasses import dataclass

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
from .config import Settings
from .eventstore import EventStore, JsonText, NewEvent, Position, RecordedEvent, outbox_channel
from .loops import Outage, retrying
from .wire import Outgoing

log = logging.getLogger(__name__)

RELAY_POSITION = "relay:outbox"
# One relay publishes at a time (the holder of this advisory lock); the others wait.
RELAY_LOCK = "alphasaga-relay"
LOCK_POLL_S = 1.0
# How long a new lock holder waits before reading the position, so that the holder whose
# session was cut (it stops at once when it learns it) has saved where it got to.
HANDOVER_GRACE_S = 0.5
# A claim the tail has not met after this long was met before it was made (the row was
# published twice, which receivers deduplicate): forget it.
CLAIM_TTL_S = 60.0


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


def wire_fields(row: RecordedEvent | NewEvent) -> tuple[str, dict[str, str]]:
    """The stream and entry fields for an outbox row, read back or about to be written."""
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


@dataclass(slots=True)
class _Claim:
    at: float  # time.monotonic() when claimed
    published: bool = False


class Relay:
    """Publishes committed outbox rows to Redis, then records its position.

    A crash after publishing and before recording re-publishes the same rows (same
    message ids) on restart: at least once, deduplicated by the receivers' inboxes.

    Two paths lead to Redis. The tail reads committed rows in commit order and publishes
    them: it is what makes delivery certain, for rows committed by any process. The
    direct path (``publish_committed``) lets the process holding the relay lock publish
    the rows it has just committed itself, at once, instead of a NOTIFY, a wake-up and a
    read later (docs/decisions/0004). Such rows are *claimed*; the tail
    skips a claimed row when it reaches it, and saves no position past a row whose direct
    publish is unfinished, so a crash at any point leaves it to the tail of the next
    relay (at least once, as before). A direct publish that fails hands its rows back to
    the tail. Rows reach Redis in commit order per saga, as each decision follows the
    reply to the previous one; across sagas the two paths may interleave.
    """

    def __init__(
        self,
        store: EventStore,
        redis: object,
        *,
        batch: int = 500,
        poll_ms: int = 50,
        save_every_ms: int = 100,
        crash_after_publish: bool = False,
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
        # The direct path: when each claimed event id was claimed, and whether its publish
        # has finished; ids the tail skipped while their publish was unfinished; rows a
        # failed direct publish handed back after the tail had skipped them.
        self._holding = False
        self._claimed: dict[uuid.UUID, _Claim] = {}
        self._skipped_unconfirmed: set[uuid.UUID] = set()
        self._handed_back: list[tuple[str, dict[str, str]]] = []
        # Fault injection for the crash test: exit once published, before the position is saved.
        self._crash_after_publish = crash_after_publish

    async def publish_committed(self, rows: Sequence[NewEvent]) -> None:
        """Publish outbox rows that this process has just committed (see the class
        docstring). Call it right after the commit returns, before anything else awaits,
        so that the claim is in place before the tail can read the rows."""
        if not rows:
            return
        if not self._holding:
            self.wake()  # the tail publishes them (here, or in the lock holder, via NOTIFY)
            return
        now = time.monotonic()
        for row in rows:
            self._claimed[row.event_id] = _Claim(now)
        fields = [wire_fields(row) for row in rows]
        try:
            pipe = self.redis.pipeline(transaction=False)  # type: ignore[attr-defined]
            for stream, entry in fields:
                pipe.xadd(stream, entry)
            await pipe.execute()
        except BaseException as exc:  # Redis down, cancelled, or a bug: the tail publishes them
            log.warning("direct publish of %d outbox rows failed, left to the relay's tail: %r", len(rows), exc)
            for row, row_fields in zip(rows, fields, strict=True):
                if self._claimed.pop(row.event_id, None) is None and row.event_id in self._skipped_unconfirmed:
                    self._skipped_unconfirmed.discard(row.event_id)
                    self._handed_back.append(row_fields)  # the tail is past it already
            self.wake()
            if not isinstance(exc, Exception):
                raise
            return
        metrics.RELAYED.inc(len(rows))
        for row in rows:
            claim = self._claimed.get(row.event_id)
            if claim is not None:
                claim.published = True
            self._skipped_unconfirmed.discard(row.event_id)

    async def measure_backlog(self) -> None:
        """Set the outbox backlog gauge (on scrape), from the relay that holds the lock."""
        if self._holding and self._position is not None:
            metrics.OUTBOX_BACKLOG.set(await self.store.outbox_backlog(self._position))

    @property
    def holding(self) -> bool:
        """Whether this relay holds the relay lock (and so publishes directly)."""
        return self._holding

    def wake(self) -> None:
        """A hint that new rows were committed (in-process); polling still runs."""
        self._wake.set()

    def _notified(self, *_: object) -> None:
        """NOTIFY from an orchestrator commit in any process: the same hint."""
        self._wake.set()

    async def publish_once(self) -> int:
        if self._position is None:
            self._position = self._saved = await self.store.load_position(RELAY_POSITION)
        # Positions and ids first: the rows this process published directly are only
        # passed over, so their content need not be read again.
        refs = await self.store.read_outbox_refs(self._position, limit=self.batch)
        unclaimed: list[int] = []
        for ref in refs:
            claim = self._claimed.pop(ref.event_id, None)
            if claim is None:
                unclaimed.append(ref.position.global_position)
            elif not claim.published:
                self._skipped_unconfirmed.add(ref.event_id)  # its direct publish is still under way
        handed_back, self._handed_back = self._handed_back, []
        to_publish = list(handed_back)
        if unclaimed:
            to_publish += [wire_fields(row) for row in await self.store.by_positions(unclaimed)]
        if to_publish:
            pipe = self.redis.pipeline(transaction=False)  # type: ignore[attr-defined]
            for stream, fields in to_publish:
                pipe.xadd(stream, fields)
            try:
                await pipe.execute()
            except BaseException:
                # The position stays before the tail's rows; only handed-back rows need keeping.
                self._handed_back[:0] = handed_back
                raise
            if self._crash_after_publish:
                os._exit(137)
            metrics.RELAYED.inc(len(to_publish))
        if refs:
            self._position = refs[-1].position
            metrics.RELAY_LAG.set(max(0.0, time.time() - refs[-1].recorded_at.timestamp()))
        if self._position != self._saved and time.monotonic() - self._saved_at >= self.save_every_s:
            await self.save()
        return len(refs)

    async def save(self) -> None:
        if self._skipped_unconfirmed or self._handed_back:
            return  # the position is past rows not yet surely published: keep the old one
        cutoff = time.monotonic() - CLAIM_TTL_S
        for event_id in [e for e, claim in self._claimed.items() if claim.at < cutoff]:
            del self._claimed[event_id]  # read by the tail before it was claimed: published twice
        if self._position is not None and self._position != self._saved:
            await self.store.save_position(RELAY_POSITION, self._position)
            self._saved, self._saved_at = self._position, time.monotonic()

    async def run(self) -> None:
        """Publish for ever while holding the relay lock; take it again after losing it."""
        outage = Outage("relay")
        attempts = retrying(outage)
        while True:  # _lead returns only by raising; a transient error is retried with backoff
            await attempts(self._lead, outage)

    async def _lead(self, outage: Outage) -> None:
        """Take the relay lock on a session of its own and publish until that session is
        lost (``LockLost``) or anything else fails. Publishing stops as soon as the loss is
        known, and the position reached is saved before the lock can be someone else's
        for long (see ``HANDOVER_GRACE_S``)."""
        session = await self.store.session(application_name="alphasaga-relay-lock")
        lost = asyncio.Event()

        def on_lost(_: object) -> None:
            lost.set()
            self.wake()

        session.add_termination_listener(on_lost)
        try:
            while not await self.store.try_session_lock(session, RELAY_LOCK):
                await asyncio.sleep(LOCK_POLL_S)
            # A holder whose session was cut stops and saves its position at once: give it
            # that moment before reading the position it leaves.
            await asyncio.sleep(HANDOVER_GRACE_S)
            await session.add_listener(outbox_channel(self.store.schema), self._notified)
            self._position = None  # read again: another relay may have moved it on
            self._holding = True
            outage.passed()
            log.info("relay is publishing the outbox")
            while True:
                if lost.is_set() or session.is_closed():
                    raise LockLost("the relay lock's session was lost")
                if await self.publish_once() < self.batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_s)
                    self._wake.clear()
        finally:
            self._holding = False
            with contextlib.suppress(*SETTLE_ERRORS):
                await self._settle()
            if session.is_closed():
                session.terminate()
            else:
                await session.close(timeout=2)

    async def _settle(self) -> None:
        """On giving up the lock: move the position over the rows this process has already
        published directly (the next holder would publish them again), then save it."""
        if self._position is None:
            return
        for ref in await self.store.read_outbox_refs(self._position, limit=self.batch):
            claim = self._claimed.get(ref.event_id)
            if claim is None or not claim.published:
                break
            del self._claimed[ref.event_id]
            self._position = ref.position
        await self.save()


class LockLost(ConnectionError):
    """The session holding the relay lock is gone: another relay may hold it now."""


# What settling after a lost lock may meet; it is best effort (the next holder then
# publishes again what this one published last, which receivers deduplicate).
SETTLE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def relay_for(store: EventStore, redis: object, settings: Settings) -> Relay:
    return Relay(
        store,
        redis,
        batch=settings.relay_batch,
        poll_ms=settings.relay_poll_ms,
        crash_after_publish=settings.fault == "relay_crash_after_publish",
    )


def main() -> None:
    """``python -m alphasaga_shared.outbox``: the relay alone (the orchestrator also runs one;
    only the holder of the relay lock publishes)."""
    from .runner import ServiceContext, run_service

    async def setup(ctx: ServiceContext) -> None:
        relay = relay_for(ctx.store, await ctx.bus.connect(), ctx.settings)
        ctx.background.append(relay.run)
        metrics.on_scrape(relay.measure_backlog)

    run_service("relay", setup)


if __name__ == "__main__":
    main()
