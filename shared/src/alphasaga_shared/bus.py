"""The Redis Streams bus, on faststream's Redis broker.

faststream reads batches for us (``StreamSub(batch=True, max_records=…)``) and owns the
connection. What it leaves out (DESIGN.md §2) is here:

* consumer groups are created at ``0`` before subscribing, so nothing written before
  the group existed is skipped;
* a reclaimer claims entries left pending by a dead or failing consumer
  (``XAUTOCLAIM`` past ``reclaim_idle_ms``) and feeds them through the same path;
  while a handler runs, its entries are re-claimed to itself so a slow handler is not
  mistaken for a dead one; idle consumers with nothing pending are removed;
* a delivery cap moves a message that keeps failing to ``<stream>:dlq`` with its body,
  headers, error and delivery count; an entry that cannot be decoded or fails its
  contract goes there at once;
* an optional idempotency guard keyed by ``message_id`` for handlers whose effects are
  their outgoing messages: outputs, the "done" mark and the ack are one MULTI/EXEC, so a
  redelivered or re-published message is acked, not redone;
* outputs and acks of a whole batch go in one round trip.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.connection import HiredisRespSerializer
from redis.exceptions import ResponseError
from redis.typing import EncodableT

from . import metrics, telemetry
from .config import Settings
from .loops import run_forever
from .streamstats import WATCHED, StreamStats
from .wire import Delivery, Envelope, MalformedMessage, Outgoing, as_text, cap_text, decode, encode, entry_size

log = logging.getLogger(__name__)

Handler = Callable[[Envelope, Delivery], Awaitable[Sequence[Outgoing]]]
# Handles a whole batch at once, before the one-by-one handler (the orchestrator decides
# and commits a batch in one transaction). Returns the entry ids it handled; the handler
# gets the others. It produces no outputs of its own: its effects are committed elsewhere.
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[set[str]]]
# What to tell the sender of a message that was just dead-lettered (its dead letter's
# entry id given): a worker replies with the step's failure, so that the saga learns at
# once instead of at the step's timeout.
DeadLetterNotice = Callable[[Delivery, str], Sequence[Outgoing] | Awaitable[Sequence[Outgoing]]]
# Header fields a dead letter of an oversized entry keeps (its body and the rest do not).
_OVERSIZED_KEEPS = ("message_id", "correlation_id", "causation_id", "type", "schema")


@dataclass(slots=True)
class Subscription:
    stream: str
    group: str
    handler: Handler
    dedupe: bool
    # Off for a handler that makes spans of its own (the orchestrator's, under its sagas').
    traced: bool = True
    batch_handler: BatchHandler | None = None
    on_dead_letter: DeadLetterNotice | None = None
    autoclaim_cursor: str = "0-0"
    # Entries a handler is working on; the heartbeat keeps them claimed by this consumer.
    in_flight: set[str] = field(default_factory=set)
    # Metric children bound once: label lookups cost more than the increments.
    m_processed: Any = None
    m_duplicate: Any = None
    m_dead: Any = None
    m_failed: Any = None
    m_seconds: Any = None

    def __post_init__(self) -> None:
        self.m_processed = metrics.MESSAGES.labels(self.stream, self.group, "processed")
        self.m_duplicate = metrics.MESSAGES.labels(self.stream, self.group, "duplicate")
        self.m_dead = metrics.MESSAGES.labels(self.stream, self.group, "dead_lettered")
        self.m_failed = metrics.MESSAGES.labels(self.stream, self.group, "failed")
        self.m_seconds = metrics.HANDLER_SECONDS.labels(self.stream, self.group)


@dataclass(slots=True)
class BatchOutcome:
    """What one pass over a batch did, for metrics and tests."""

    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    failed: int = 0


async def ensure_group(client: Redis, stream: str, group: str) -> None:
    """Create ``group`` at id 0 (faststream would create it at ``$``)."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def _parse(raw: Any) -> StreamMessage[Any]:
    return StreamMessage(raw_message=raw, body=b"")


async def _decode(msg: StreamMessage[Any]) -> Any:
    raw = msg.raw_message
    return list(zip(raw["message_ids"], raw["data"], strict=True))


class HiredisPackingConnection(Connection):
    """redis-py's asyncio connection packs each command in Python: about 18 µs for one of
    our XADDs, on every message the relay and the workers send. hiredis, installed for
    parsing replies, packs the same bytes in 2 µs, through the serializer redis-py's sync
    client uses (docs/decisions/0008)."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        packed: list[bytes] = _HIREDIS_PACKER.pack(*args)  # type: ignore[arg-type]
        return packed


_HIREDIS_PACKER = HiredisRespSerializer()


class Bus:
    def __init__(self, settings: Settings, *, service: str, redis_url: str | None = None) -> None:
        url = redis_url or settings.redis_url
        if not url:
            raise ValueError("a Redis URL is required")
        self.settings = settings
        self.service = service
        self.consumer = settings.consumer
        # TLS (rediss://) and Unix sockets keep redis-py's own connection classes.
        packing: dict[str, Any] = (
            {"connection_class": HiredisPackingConnection} if urlparse(url).scheme == "redis" else {}
        )
        self.broker = RedisBroker(
            url,
            logger=None,  # type: ignore[arg-type]  # None silences per-message logs
            socket_connect_timeout=settings.connect_timeout_s,
            **packing,
        )
        self._client: Redis | None = None
        self._subscriptions: list[Subscription] = []
        self._reclaimer: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._started = False
        self._stats: StreamStats | None = None
        self._watched: list[tuple[str, str]] = []  # groups reported but not read

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("bus not connected: call connect() or start() first")
        return self._client

    async def connect(self) -> Redis:
        if self._client is None:
            self._client = await self.broker.connect()
        return self._client

    # --- publishing ----------------------------------------------------------------

    async def publish(self, outgoing: Sequence[Outgoing]) -> list[str]:
        """Publish in one round trip; returns the entry ids."""
        if not outgoing:
            return []
        client = await self.connect()
        entries = [(out.stream, self._encode(out)) for out in outgoing]
        async with client.pipeline(transaction=False) as pipe:
            for stream, fields in entries:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            ids = await pipe.execute()
        metrics.PUBLISHED.inc(len(outgoing))
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    # --- consuming -----------------------------------------------------------------

    def subscribe(
        self,
        stream: str,
        handler: Handler,
        *,
        group: str | None = None,
        dedupe: bool = False,
        max_records: int | None = None,
        batch_handler: BatchHandler | None = None,
        on_dead_letter: DeadLetterNotice | None = None,
        traced: bool = True,
    ) -> Subscription:
        """Consume ``stream`` as one consumer of ``group`` (default: the service's name).

        A batch is committed (outputs and acks) after its last message: services whose
        handlers take long should read one message at a time (``max_records=1``)."""
        if self._started:
            raise RuntimeError("subscribe before start()")
        sub = Subscription(
            stream=stream,
            group=group or self.service,
            handler=handler,
            dedupe=dedupe,
            traced=traced,
            batch_handler=batch_handler,
            on_dead_letter=on_dead_letter,
        )
        self._subscriptions.append(sub)

        async def on_batch(body: Any) -> None:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = body
            deliveries = [Delivery(stream=stream, entry_id=eid.decode(), fields=as_text(data)) for eid, data in entries]
            await self.process(sub, deliveries)

        self.broker.subscriber(
            stream=StreamSub(
                stream,
                group=sub.group,
                consumer=self.consumer,
                batch=True,
                max_records=max_records or self.settings.max_records,
                polling_interval=self.settings.block_ms,
            ),
            parser=_parse,
            decoder=_decode,
            ack_policy=AckPolicy.MANUAL,
        )(on_batch)
        return sub

    def watch(self, stream: str, group: str) -> None:
        """Report ``group``'s state on ``stream`` with this bus's own (the orchestrator
        watches its workers' groups, so that a group left with no consumer is seen)."""
        self._watched.append((stream, group))

    async def start(self) -> None:
        client = await self.connect()
        for sub in self._subscriptions:
            await ensure_group(client, sub.stream, sub.group)
        await self.broker.start()
        self._started = True
        if self._subscriptions:
            groups = [(sub.stream, sub.group) for sub in self._subscriptions] + self._watched
            dead = {stream: self.settings.streams.dead_letters(stream) for stream, _ in groups}
            self._stats = StreamStats(client, groups, dead)
            WATCHED.sources.append(self._stats)
            self._reclaimer = asyncio.create_task(self._reclaim_forever(), name="bus-reclaimer")
            self._heartbeat = asyncio.create_task(self._keep_claimed(), name="bus-heartbeat")

    async def check_groups(self) -> None:
        """Raise unless every group this bus reads exists (for readiness: a group deleted by
        hand means nothing is consumed until it is made again)."""
        for sub in self._subscriptions:
            names = {
                g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
                for g in await self.client.xinfo_groups(sub.stream)
            }
            if sub.group not in names:
                raise LookupError(f"no group {sub.group} on {sub.stream}")

    async def stop(self) -> None:
        """Stop reading; entries in flight stay pending for the reclaimer of another process.

        Each part gets a deadline (``Settings.stop_timeout_s``) and is then left behind with
        a warning: stopping must not hang on a Redis call that never answers. ``asyncio.wait``
        neither hangs nor swallows the caller's own cancellation."""
        deadline = self.settings.stop_timeout_s
        if self._stats is not None:
            WATCHED.sources.remove(self._stats)
            self._stats = None
        background = [t for t in (self._reclaimer, self._heartbeat) if t is not None]
        for task in background:
            task.cancel()
        self._reclaimer = self._heartbeat = None
        if background:
            _, late = await asyncio.wait(background, timeout=deadline)
            for task in late:
                log.warning("bus task %s did not stop within %.0f s; left behind", task.get_name(), deadline)
        broker_stop = asyncio.ensure_future(self.broker.stop())
        _, late = await asyncio.wait([broker_stop], timeout=deadline)
        if late:
            log.warning("the broker did not stop within %.0f s; left behind", deadline)
        elif (exc := broker_stop.exception()) is not None:
            raise exc
        self._client = None
        self._started = False

    async def process(self, sub: Subscription, deliveries: list[Delivery]) -> BatchOutcome:
        """Decode, dedupe, handle and commit one batch. Never raises for a bad message."""
        outcome = BatchOutcome()
        client = self.client
        ack: list[str] = []
        outputs: list[tuple[str, dict[str, str]]] = []
        done_keys: list[str] = []
        dead: list[Delivery] = []
        runnable: list[Delivery] = []
        limit = self.settings.max_entry_bytes

        for d in deliveries:
            size = entry_size(d.fields)
            if size > limit:
                d.error = f"oversized: an entry of {size:,} bytes is over the {limit:,}-byte limit"
                d.fields = {k: v[:200] for k, v in d.fields.items() if k in _OVERSIZED_KEEPS}
                dead.append(d)
                continue
            try:
                d.envelope = decode(d.fields)
            except MalformedMessage as exc:
                d.error = f"malformed: {exc}"
                dead.append(d)
            else:
                runnable.append(d)

        if sub.dedupe and runnable:
            keys = [self._done_key(sub, d) for d in runnable]
            seen = await client.mget(keys)
            fresh: list[Delivery] = []
            batch_ids: set[str] = set()
            for d, mark in zip(runnable, seen, strict=True):
                assert d.envelope is not None
                if mark is not None or d.envelope.message_id in batch_ids:
                    ack.append(d.entry_id)
                    outcome.duplicates += 1
                else:
                    batch_ids.add(d.envelope.message_id)
                    fresh.append(d)
            runnable = fresh

        if runnable:
            working = {d.entry_id for d in runnable}
            sub.in_flight.update(working)
            try:
                if sub.batch_handler is not None:
                    try:
                        handled = await sub.batch_handler(runnable)
                    except Exception:  # the batch path failed: every message is still handled below
                        log.exception("batch handler failed on %s; handling one by one", sub.stream)
                        handled = set()
                    ack.extend(d.entry_id for d in runnable if d.entry_id in handled)
                    outcome.processed += len(handled)
                    runnable = [d for d in runnable if d.entry_id not in handled]
                for d in runnable:
                    assert d.envelope is not None
                    started = time.perf_counter()
                    try:
                        with telemetry.consume_span(d.envelope, d.stream, traced=sub.traced):
                            produced = [(out.stream, self._encode(out)) for out in await sub.handler(d.envelope, d)]
                            trace_ref = metrics.exemplar()  # while the span is current
                    except Exception as exc:  # a handler bug must not stop the service
                        sub.m_seconds.observe(time.perf_counter() - started)
                        d.error = f"{type(exc).__name__}: {exc}"
                        # A message the handler finds invalid will never succeed: dead-letter now.
                        if isinstance(exc, MalformedMessage) or d.delivery_count >= self.settings.delivery_cap:
                            dead.append(d)
                        else:
                            outcome.failed += 1
                            sub.m_failed.inc()
                            log.warning(
                                "handler failed on %s (delivery %d of %d), will retry: %s",
                                d.entry_id,
                                d.delivery_count,
                                self.settings.delivery_cap,
                                d.error,
                                exc_info=exc,
                            )
                        continue
                    sub.m_seconds.observe(time.perf_counter() - started, trace_ref)
                    outputs.extend(produced)
                    ack.append(d.entry_id)
                    if sub.dedupe:
                        done_keys.append(self._done_key(sub, d))
                    outcome.processed += 1
            finally:
                sub.in_flight.difference_update(working)

        for d in dead:
            ack.append(d.entry_id)
            outcome.dead_lettered += 1
            log.error(
                "dead-lettered %s from %s after %d deliveries: %s",
                d.entry_id,
                d.stream,
                d.delivery_count,
                cap_text(d.error or "", self.settings.max_error_chars, "error"),
            )

        if ack or outputs or dead:
            await self._commit(sub, outputs, done_keys, dead, ack)
        if outcome.processed:
            sub.m_processed.inc(outcome.processed)
        if outcome.duplicates:
            sub.m_duplicate.inc(outcome.duplicates)
        if outcome.dead_lettered:
            sub.m_dead.inc(outcome.dead_lettered)
        return outcome

    async def _commit(
        self,
        sub: Subscription,
        outputs: list[tuple[str, dict[str, str]]],
        done_keys: list[str],
        dead: list[Delivery],
        ack: list[str],
    ) -> None:
        """Outputs, done marks, dead letters and acks: one MULTI/EXEC, one round trip. Then
        the notices of the dead letters, which need their entry ids (at least once: a
        crash in between leaves the sender to its timeout, as before notices existed)."""
        if not (outputs or done_keys or dead):
            await self.client.xack(sub.stream, sub.group, *ack)  # nothing to keep atomic with
            return
        ttl = self.settings.idempotency_ttl_s
        async with self.client.pipeline(transaction=True) as pipe:
            for stream, fields in outputs:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            for key in done_keys:
                pipe.set(key, b"1", ex=ttl)
            for d in dead:
                pipe.xadd(self.settings.streams.dead_letters(d.stream), self._dead_letter_fields(sub, d))  # type: ignore[arg-type]
            if ack:
                pipe.xack(sub.stream, sub.group, *ack)
            results = await pipe.execute()
        if outputs:
            metrics.PUBLISHED.inc(len(outputs))
        if dead and sub.on_dead_letter is not None:
            dead_ids = results[len(outputs) + len(done_keys) : len(outputs) + len(done_keys) + len(dead)]
            await self._notify_dead_letters(sub, dead, dead_ids)

    async def _notify_dead_letters(self, sub: Subscription, dead: list[Delivery], dead_ids: list[Any]) -> None:
        """Tell whom ``sub`` names about its dead letters: what the notice returns is
        published here; a notice may also record what it has to say itself (awaitable)."""
        assert sub.on_dead_letter is not None
        try:
            notices: list[Outgoing] = []
            for d, entry_id in zip(dead, dead_ids, strict=True):
                found = sub.on_dead_letter(d, entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id))
                notices.extend(await found if inspect.isawaitable(found) else found)
            await self.publish(notices)
        except Exception:  # a notice is a courtesy: the dead letter itself is safe
            log.exception("could not send the notices of %d dead letters of %s", len(dead), sub.stream)

    def _encode(self, out: Outgoing) -> dict[str, str]:
        """The entry for ``out``; refused (``MalformedMessage``) when over the size limit."""
        fields = encode(out.envelope)
        size = entry_size(fields)
        if size > self.settings.max_entry_bytes:
            raise MalformedMessage(
                f"{out.envelope.type} of {size:,} bytes for {out.stream} is over the"
                f" {self.settings.max_entry_bytes:,}-byte limit: not published"
            )
        return fields

    def _dead_letter_fields(self, sub: Subscription, d: Delivery) -> dict[str, str]:
        # The original fields stay as they were; ours are prefixed so they cannot clash.
        fields = dict(d.fields)
        error = cap_text(d.error or "unknown error", self.settings.max_error_chars, "dlq_error")
        fields.update(
            {
                "dlq_error": error.encode("ascii", "backslashreplace").decode(),
                "dlq_delivery_count": str(d.delivery_count),
                "dlq_source_stream": d.stream,
                "dlq_source_id": d.entry_id,
                "dlq_group": sub.group,
                "dlq_consumer": self.consumer,
                "dlq_at_ms": str(int(time.time() * 1000)),
            }
        )
        return fields

    def _done_key(self, sub: Subscription, d: Delivery) -> str:
        assert d.envelope is not None
        return f"{self.settings.namespace}:done:{sub.group}:{d.envelope.message_id}"

    # --- reclaiming ----------------------------------------------------------------

    async def _keep_claimed(self) -> None:
        """Reset the idle time of entries our handlers are working on (XCLAIM JUSTID does
        not count as a delivery), so the reclaimer of another process leaves them alone."""
        period = self.settings.reclaim_idle_ms / 3000

        async def one_pass() -> bool:
            for sub in self._subscriptions:
                if sub.in_flight:
                    await self.client.xclaim(
                        sub.stream,
                        sub.group,
                        self.consumer,
                        min_idle_time=0,
                        message_ids=list[Any](sub.in_flight),
                        justid=True,
                    )
            return False

        await run_forever("bus heartbeat", one_pass, lambda: asyncio.sleep(period))

    async def _reclaim_forever(self) -> None:
        period = self.settings.reclaim_interval_ms / 1000
        last_cleanup = 0.0

        async def one_pass() -> bool:
            nonlocal last_cleanup
            for sub in self._subscriptions:
                while await self.reclaim_once(sub):
                    pass
            if time.monotonic() - last_cleanup > self.settings.dead_consumer_idle_ms / 2000:
                last_cleanup = time.monotonic()
                for sub in self._subscriptions:
                    await self.remove_idle_consumers(sub)
            return False

        await run_forever("bus reclaimer", one_pass, lambda: asyncio.sleep(period))

    async def reclaim_once(self, sub: Subscription) -> int:
        """Claim and process one page of entries idle past ``reclaim_idle_ms``; returns how
        many were claimed (0 when the pending list has been walked to its end)."""
        client = self.client
        reply = await client.xautoclaim(
            sub.stream,
            sub.group,
            self.consumer,
            min_idle_time=self.settings.reclaim_idle_ms,
            start_id=sub.autoclaim_cursor,
            count=self.settings.max_records,
        )
        cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        sub.autoclaim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        if deleted:
            # Trimmed while pending: the entry is gone. Count it loudly, never silently.
            metrics.LOST.labels(sub.stream).inc(len(deleted))
            log.error("%d pending entries of %s were trimmed before processing: %s", len(deleted), sub.stream, deleted)
        if not entries:
            return 0
        ids = [eid.decode() for eid, _ in entries]
        counts = await self._delivery_counts(sub, ids)
        deliveries = [
            Delivery(stream=sub.stream, entry_id=eid, fields=as_text(data), delivery_count=counts.get(eid, 1))
            for eid, (_, data) in zip(ids, entries, strict=True)
        ]
        metrics.RECLAIMED.labels(sub.stream, sub.group).inc(len(deliveries))
        log.info("reclaimed %d idle entries of %s", len(deliveries), sub.stream)
        await self.process(sub, deliveries)
        return len(deliveries)

    async def _delivery_counts(self, sub: Subscription, ids: list[str]) -> dict[str, int]:
        rows = await self.client.xpending_range(
            sub.stream, sub.group, min=ids[0], max=ids[-1], count=len(ids) + 1000, consumername=self.consumer
        )
        counts: dict[str, int] = {}
        for r in rows:
            mid = r["message_id"]
            counts[mid.decode() if isinstance(mid, bytes) else str(mid)] = int(r["times_delivered"])
        return counts

    async def remove_idle_consumers(self, sub: Subscription) -> list[str]:
        """Delete consumers of the group that hold nothing and have been idle a long time."""
        removed: list[str] = []
        for c in await self.client.xinfo_consumers(sub.stream, sub.group):
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if name == self.consumer or int(c["pending"]) > 0:
                continue
            if int(c["idle"]) >= self.settings.dead_consumer_idle_ms:
                await self.client.xgroup_delconsumer(sub.stream, sub.group, name)
                removed.append(name)
        if removed:
            log.info("removed idle consumers of %s/%s: %s", sub.stream, sub.group, removed)
        return removed
