"""The Redis Streams bus, on faststream's Redis broker.

faststream reads batches for us (``StreamSub(batch=True, max_records=…)``) and owns the
connection. What it leaves out (DESIGN.md §2) is here and beside it:

* consumer groups are created at ``0`` before subscribing, so nothing written before
  the group existed is skipped;
* each batch goes through the middleware chain of ``chain.py`` (size guard, decoder,
  idempotency guard, error policy with its delivery cap, tracing, timing), and what it
  collected (outputs, "done" marks, dead letters, acks) is committed here in one
  MULTI/EXEC, one round trip;
* the reclaimer of ``reclaim.py`` takes over entries left pending by a dead or failing
  consumer and feeds them through the same chain;
* the keeper of ``groups.py`` makes a group Redis forgot again, and restarts its reader;
* the gate of ``lanes.py`` lets a stream's express lane go first within the process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Sequence
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

from .. import metrics
from ..config import Settings
from ..entries import as_text
from ..held import Held, held_key
from ..outages import OUTAGES, STORES, Span
from ..sentinel import Sentinel
from ..streamstats import WATCHED, StreamStats
from ..wire import Delivery, Outgoing, cap_text
from . import chain as ch
from .assembly import (
    Counters,
    DeadLetterNotice,
    Entry,
    GroupState,
    Read,
    dead_letter_fields,
    encode_entry,
    notify_dead,
    subscription_chain,
)
from .groups import GroupKeeper
from .lanes import LaneGate, is_express
from .reclaim import Reclaimer
from .redis_log import RedisLog

log = logging.getLogger("alphasaga_shared.bus")


@dataclass(slots=True)
class Subscription:
    stream: str
    group: str
    dedupe: bool
    on_dead_letter: DeadLetterNotice | None = None
    express: bool = False  # an express lane (``Streams.lanes``): it goes first in this process
    # The chain a batch of this subscription goes through (``chain.chain``).
    run: ch.NextBatch | None = None
    autoclaim_cursor: str = "0-0"
    # Entries a handler is working on; the heartbeat keeps them claimed by this consumer.
    in_flight: set[str] = field(default_factory=set)
    # faststream's subscriber that reads the group (restarted after the group was made again).
    reader: Any = None
    counters: Counters | None = None

    def __post_init__(self) -> None:
        self.counters = Counters(self.stream, self.group)

    def count(self, outcome: ch.BatchOutcome) -> None:
        assert self.counters is not None
        self.counters.count(outcome)


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
        self._background: list[asyncio.Task[None]] = []
        self._started = False
        self._stats: StreamStats | None = None
        self._watched: list[tuple[str, str]] = []  # groups reported but not read
        self.lanes = LaneGate()

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

    async def publish_entries(self, entries: Sequence[Entry]) -> list[str]:
        return await RedisLog(await self.connect(), self.settings).publish_entries(entries)

    def forgetting(self, namespace: str) -> ConnectingSentinel:
        return ConnectingSentinel(self, namespace)

    async def log(self) -> RedisLog:
        """The streams read as logs (``transport.StreamLog``) over this bus's connection."""
        return RedisLog(await self.connect(), self.settings)

    async def entries(self, stream: str, *, after: str | None = None, count: int = 1000) -> list[Entry]:
        return await (await self.log()).entries(stream, after=after, count=count)

    async def tip(self, stream: str) -> str:
        return await (await self.log()).tip(stream)

    async def delete_entries(self, stream: str, entry_ids: Sequence[str]) -> int:
        return await (await self.log()).delete_entries(stream, entry_ids)

    async def redrive(self, dlq_stream: str, entry_id: str, original: dict[str, str]) -> str:
        return await (await self.log()).redrive(dlq_stream, entry_id, original)

    async def dead_letter_streams(self, namespace: str) -> list[str]:
        return await (await self.log()).dead_letter_streams(namespace)

    async def read(self, cursors: dict[str, str], *, count: int, block_ms: int) -> list[Read]:
        return await (await self.log()).read(cursors, count=count, block_ms=block_ms)

    async def held(self, namespace: str, saga: str) -> list[str]:
        return await (await self.log()).held(namespace, saga)

    async def has_group(self, stream: str, group: str) -> bool:
        return await (await self.log()).has_group(stream, group)

    async def group_state(self, stream: str, group: str) -> GroupState | None:
        return await (await self.log()).group_state(stream, group)

    async def ping(self) -> None:
        await (await self.connect()).ping()

    # --- consuming -----------------------------------------------------------------

    def subscribe(
        self,
        stream: str,
        handler: ch.Handler,
        *,
        group: str | None = None,
        dedupe: bool = False,
        max_records: int | None = None,
        batch_handler: ch.BatchHandler | None = None,
        on_dead_letter: DeadLetterNotice | None = None,
        traced: bool = True,
        deadline: ch.Deadline | None = None,
        on_outlasted: ch.OutlastedNotice | None = None,
        admit: ch.Refusal | None = None,
    ) -> Subscription:
        """Consume ``stream`` as one consumer of ``group`` (default: the service's name).

        ``dedupe`` turns on the idempotency guard (for handlers whose effects are their
        outgoing messages); ``batch_handler`` is offered each batch first; ``traced`` off
        for a handler that makes spans of its own (the orchestrator's, under its sagas').
        A handler that meets an outage is held until the store is back, or until the
        message's ``deadline``, when ``on_outlasted`` answers for it (chain.ErrorPolicy).
        A batch is committed (outputs and acks) after its last message: services whose
        handlers take long should read one message at a time (``max_records=1``).
        ``admit`` says why a decoded message does not belong on this stream: it is then
        dead-lettered before any handler sees it."""
        if self._started:
            raise RuntimeError("subscribe before start()")
        express = is_express(stream)
        sub = Subscription(
            stream=stream, group=group or self.service, dedupe=dedupe, on_dead_letter=on_dead_letter, express=express
        )
        sub.run = subscription_chain(
            self.settings,
            stream=stream,
            group=sub.group,
            handler=handler,
            seen_before=self._seen_before(sub) if dedupe else None,
            in_flight=sub.in_flight,
            board=HeldBoard(self, sub.group),
            batch_handler=batch_handler,
            admit=admit,
            traced=traced,
            deadline=deadline,
            on_outlasted=on_outlasted,
            give_way=self.lanes.give_way(stream),
        )
        self._subscriptions.append(sub)

        async def on_batch(body: Any) -> None:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = body
            deliveries = [Delivery(stream=stream, entry_id=eid.decode(), fields=as_text(data)) for eid, data in entries]
            await self.process(sub, deliveries)

        sub.reader = reader = self.broker.subscriber(
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
        )
        reader(on_batch)
        return sub

    def _seen_before(self, sub: Subscription) -> ch.SeenBefore:
        async def seen_before(message_ids: Sequence[str]) -> list[bool]:
            keys = [self._done_key(sub, m) for m in message_ids]
            marks = await OUTAGES.ride_out(lambda: self.client.mget(keys))
            return [mark is not None for mark in marks]

        return seen_before

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
            keeper = GroupKeeper(client, self.settings.group_recovery_s, self._restart_reader)
            reclaimer = Reclaimer(client, self.settings, self._subscriptions, self.process, keeper)
            self._background = [
                asyncio.create_task(reclaimer.reclaim_forever(), name="bus-reclaimer"),
                asyncio.create_task(reclaimer.keep_claimed(), name="bus-heartbeat"),
            ]

    async def _restart_reader(self, sub: Subscription) -> None:
        """Start ``sub``'s faststream subscriber again if it stopped (it stops for good when
        its read meets ``NOGROUP``); its group exists again by now."""
        if self._started and sub.reader is not None and not sub.reader.running:
            await sub.reader.start()

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
        background, self._background = self._background, []
        for task in background:
            task.cancel()
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

    async def process(self, sub: Subscription, deliveries: list[Delivery]) -> ch.BatchOutcome:
        """One batch through the subscription's chain, then its commit. Never raises for a
        bad message. An express lane's batch holds this process's normal lanes meanwhile."""
        return await self.lanes.in_turn(sub.express, lambda: self._process(sub, deliveries))

    async def _process(self, sub: Subscription, deliveries: list[Delivery]) -> ch.BatchOutcome:
        assert sub.run is not None
        batch = ch.Batch(deliveries)
        await sub.run(batch)
        for d in batch.dead:
            log.error(
                "dead-lettered %s from %s after %d deliveries: %s",
                d.entry_id,
                d.stream,
                d.delivery_count,
                cap_text(d.error or "", self.settings.max_error_chars, "error"),
            )
        if batch.ack or batch.outputs or batch.dead:
            # What the batch did is kept through an outage of Redis, not done again. A commit
            # whose reply was lost is sent again: its outputs keep their message ids, which
            # the receivers' guards drop as duplicates.
            await OUTAGES.ride_out(lambda: self._commit(sub, batch))
        sub.count(batch.outcome)
        return batch.outcome

    async def _commit(self, sub: Subscription, batch: ch.Batch) -> None:
        """Outputs, done marks, dead letters and acks: one MULTI/EXEC, one round trip. Then
        the notices of the dead letters, which need their entry ids (at least once: a
        crash in between leaves the sender to its timeout, as before notices existed)."""
        outputs, dead, ack = batch.outputs, batch.dead, batch.ack
        done = batch.done if sub.dedupe else []
        if not (outputs or done or dead):
            await self.client.xack(sub.stream, sub.group, *ack)  # nothing to keep atomic with
            return
        ttl = self.settings.idempotency_ttl_s
        async with self.client.pipeline(transaction=True) as pipe:
            for stream, fields in outputs:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            for message_id in done:
                pipe.set(self._done_key(sub, message_id), b"1", ex=ttl)
            for d in dead:
                pipe.xadd(self.settings.streams.dead_letters(d.stream), dead_letter_fields(self.settings, sub.group, d))  # type: ignore[arg-type]
            if ack:
                pipe.xack(sub.stream, sub.group, *ack)
            results = await pipe.execute()
        if outputs:
            metrics.PUBLISHED.inc(len(outputs))
        if dead and sub.on_dead_letter is not None:
            first = len(outputs) + len(done)
            await self._notify_dead(sub, dead, results[first : first + len(dead)])

    async def _notify_dead(self, sub: Subscription, dead: list[Delivery], dead_ids: list[Any]) -> None:
        assert sub.on_dead_letter is not None
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in dead_ids]
        await notify_dead(sub.on_dead_letter, sub.stream, dead, ids, self.publish)

    def _encode(self, out: Outgoing) -> dict[str, str]:
        return encode_entry(self.settings, out)

    def _done_key(self, sub: Subscription, message_id: str) -> str:
        return f"{self.settings.namespace}:done:{sub.group}:{message_id}"


class ConnectingSentinel:
    """``sentinel.Sentinel`` over the bus's connection, made when first asked (the relay is
    set up before the bus connects)."""

    def __init__(self, bus: Bus, namespace: str) -> None:
        self.bus = bus
        self.namespace = namespace

    async def _sentinel(self) -> Sentinel:
        return Sentinel(await self.bus.connect(), self.namespace)

    async def forgotten(self) -> str | None:
        return await (await self._sentinel()).forgotten()

    async def begin(self) -> None:
        await (await self._sentinel()).begin()

    async def done(self) -> bool:
        return await (await self._sentinel()).done()


class HeldBoard:
    """Shows the messages held through an outage, for ``alphasaga status``: a hash per saga
    (the message's correlation id), ``<namespace>:held:<saga>``, one field per held entry.
    It expires unless refreshed by each retry, so a process that died holding leaves
    nothing behind. Best effort: when Redis itself is down, nothing is shown."""

    TTL_S = 30

    def __init__(self, bus: Bus, group: str) -> None:
        self.bus = bus
        self.group = group

    async def show(self, d: Delivery, span: Span) -> None:
        env = d.envelope
        if env is None or not env.correlation_id:
            return
        held = Held(
            service=self.group,
            consumer=self.bus.consumer,
            type=env.type,
            step=str(getattr(env.message, "step", "")),
            store=STORES.get(span.store, span.store),
            since=span.since,
        )
        key = held_key(self.bus.settings.namespace, env.correlation_id)
        try:
            async with self.bus.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, f"{self.bus.consumer}/{d.stream}/{d.entry_id}", json.dumps(dataclasses.asdict(held)))
                pipe.expire(key, self.TTL_S)
                await asyncio.wait_for(pipe.execute(), 2.0)
        except Exception as exc:  # shown when possible; the log line and the condition say it anyway
            log.debug("could not show held %s: %r", d.entry_id, exc)

    async def clear(self, d: Delivery) -> None:
        env = d.envelope
        if env is None or not env.correlation_id:
            return
        key = held_key(self.bus.settings.namespace, env.correlation_id)
        try:
            await asyncio.wait_for(self.bus.client.hdel(key, f"{self.bus.consumer}/{d.stream}/{d.entry_id}"), 2.0)
        except Exception as exc:  # it expires on its own
            log.debug("could not clear held %s: %r", d.entry_id, exc)
