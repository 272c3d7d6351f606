"""The bus on NATS JetStream, with nats-py (docs/decisions/0021, docs/wire-format.md).

The same guarantees as on Redis, from JetStream's own parts:

* a JetStream stream per family of our streams (``subjects.py``), a durable pull consumer
  per reading group and stream, delivering from the first message (as a Redis group made
  at ``0``), acks explicit;
* each fetched batch goes through the same middleware chain as on Redis
  (``assembly.subscription_chain``), then its outputs, dead letters, done marks and acks
  are committed; JetStream has no transaction over several streams, so they go in that
  order, each publish carrying its message id as ``Nats-Msg-Id``: a commit done again
  after a crash or an outage publishes nothing twice within the duplicate window, and the
  receivers' guards drop anything older;
* no reclaimer: the consumer's AckWait (``reclaim_idle_ms``) redelivers what a dead
  consumer held, and the heartbeat sends ``in_progress`` for what a live handler works
  on every third of it; a failed message is left unanswered, and the same AckWait brings
  it back (not nak'd with a delay: nats-server 2.9, Debian bookworm's, then at times
  delivers another message, already acked, in its place, docs/decisions/0021);
* the delivery cap is our own count check (the message's ``num_delivered``), as on Redis,
  not MaxDeliver: the server stops delivering at MaxDeliver and only says so in an
  advisory, so a consumer killed on the last delivery would leave the message to nobody;
* done marks and the board of held messages are key-value buckets
  (``<ns>_done``, whose age limit is the idempotency TTL, and ``<ns>_held``, 30 s);
* a consumer the server forgot is made again, as the keeper does for a Redis group.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.kv import KeyValue

from .. import metrics
from ..config import Settings
from ..held import Held
from ..loops import Outage, is_transient, retrying
from ..outages import OUTAGES, STORES, Span
from ..sentinel import REPUBLISHING
from ..streamstats import WATCHED
from ..wire import Delivery, Outgoing, cap_text
from . import chain as ch
from . import subjects
from .assembly import (
    Counters,
    DeadLetterNotice,
    Entry,
    GroupState,
    dead_letter_fields,
    encode_entry,
    notify_dead,
    subscription_chain,
)
from .lanes import LaneGate, is_express

log = logging.getLogger("alphasaga_shared.bus")

MSG_ID = "Nats-Msg-Id"
FAMILIES = ("cmd", "evt", subjects.DLQ)
HELD_TTL_S = 30


def payload_of(fields: dict[str, str]) -> bytes:
    """A message's payload on NATS: its wire fields as one flat JSON object."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def fields_of(data: bytes) -> dict[str, str]:
    """The wire fields of a payload; one that is not a flat JSON object of strings is kept
    whole under ``payload``, for the decoder to refuse and the dead letter to show."""
    text = data.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return {"payload": text}
    if isinstance(parsed, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()):
        return parsed
    return {"payload": text}


@dataclass(slots=True)
class Subscription:
    stream: str
    group: str
    dedupe: bool
    max_records: int
    on_dead_letter: DeadLetterNotice | None = None
    run: ch.NextBatch | None = None
    place: subjects.Place | None = None
    durable: str = ""
    pull: Any = None  # nats-py's PullSubscription
    in_flight: set[str] = field(default_factory=set)
    # The messages of the batch being handled, by entry id (stream sequence), to ack.
    messages: dict[str, Msg] = field(default_factory=dict)
    counters: Counters | None = None
    express: bool = False  # an express lane (``Streams.lanes``): it goes first in this process

    def __post_init__(self) -> None:
        self.place = subjects.place(self.stream)
        self.durable = subjects.durable(self.group, self.stream)
        self.counters = Counters(self.stream, self.group)


class JetStreamBus:
    def __init__(self, settings: Settings, *, service: str, url: str) -> None:
        self.settings = settings
        self.service = service
        self.consumer = settings.consumer
        self.url = url
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._ready_streams: set[str] = set()
        self._buckets: dict[str, KeyValue] = {}
        self._subscriptions: list[Subscription] = []
        self.lanes = LaneGate()  # a stream's express lane goes first in this process (decisions/0023)
        self._watched: list[tuple[str, str]] = []
        self._readers: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._stopping = False
        self._started = False
        self._stats: JetStreamStats | None = None

    # --- connection ----------------------------------------------------------------

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("bus not connected: call connect() or start() first")
        return self._js

    async def connect(self) -> JetStreamContext:
        if self._js is None:
            self._nc = await nats.connect(
                self.url.split(","),  # a cluster's seed servers, comma-separated
                name=f"alphasaga-{self.service}-{self.consumer}",
                connect_timeout=self.settings.connect_timeout_s,
                max_reconnect_attempts=-1,  # outages are ridden out, never given up on
                reconnect_time_wait=0.5,
                allow_reconnect=True,
            )
            self._js = self._nc.jetstream(timeout=self.settings.connect_timeout_s)
        return self._js

    async def ping(self) -> None:
        await self.connect()
        assert self._nc is not None
        await self._nc.flush(timeout=2)
        await self.js.account_info()

    async def ensure_stream(self, name: str) -> subjects.Place:
        """The JetStream stream of logical stream ``name``, made if missing."""
        where = subjects.place(name)
        if where.stream in self._ready_streams:
            return where
        js = await self.connect()
        family_subject = where.subject.split(".", 2)
        config = StreamConfig(
            name=where.stream,
            subjects=[f"{family_subject[0]}.{family_subject[1]}.>"],
            storage=StorageType.FILE,
            num_replicas=self.settings.nats_replicas,
            duplicate_window=self.settings.nats_duplicate_window_s,
        )
        try:
            await js.stream_info(where.stream)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:  # made by another process meanwhile
                await js.stream_info(where.stream)
        self._ready_streams.add(where.stream)
        return where

    async def bucket(self, kind: str, ttl_s: float) -> KeyValue:
        name = f"{subjects.token(self.settings.namespace)}_{kind}"
        if name not in self._buckets:
            js = await self.connect()
            try:
                self._buckets[name] = await js.key_value(name)
            except nats.js.errors.BucketNotFoundError:
                self._buckets[name] = await js.create_key_value(
                    bucket=name, ttl=ttl_s, replicas=self.settings.nats_replicas, history=1
                )
        return self._buckets[name]

    # --- publishing ----------------------------------------------------------------

    async def publish(self, outgoing: Sequence[Outgoing]) -> list[str]:
        """Publish, the acks awaited together; returns the stream sequences."""
        if not outgoing:
            return []
        ids = await self._publish([(out.stream, encode_entry(self.settings, out)) for out in outgoing])
        metrics.PUBLISHED.inc(len(outgoing))
        return ids

    async def publish_entries(self, entries: Sequence[Entry]) -> list[str]:
        return await self._publish(entries)

    async def _publish(self, entries: Sequence[Entry], msg_ids: Sequence[str | None] | None = None) -> list[str]:
        js = await self.connect()
        places = [await self.ensure_stream(stream) for stream, _ in entries]
        ids = msg_ids if msg_ids is not None else [fields.get("message_id") for _, fields in entries]
        acks = await asyncio.gather(
            *(
                js.publish(where.subject, payload_of(fields), headers={MSG_ID: mid} if mid else None)
                for where, (_, fields), mid in zip(places, entries, ids, strict=True)
            )
        )
        return [str(a.seq) for a in acks]

    def forgetting(self, namespace: str) -> JetStreamSentinel:
        return JetStreamSentinel(self, namespace)

    # --- streams as logs (transport.StreamLog) -------------------------------------

    async def entries(self, stream: str, *, after: str | None = None, count: int = 1000) -> list[Entry]:
        """The subject's messages after sequence ``after``, one direct get each."""
        js = await self.connect()
        where = await self.ensure_stream(stream)
        seq = _sequence(after) + 1
        found: list[Entry] = []
        while len(found) < count:
            try:
                raw = await js.get_msg(where.stream, seq=seq, subject=where.subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            assert raw.seq is not None
            found.append((str(raw.seq), fields_of(raw.data or b"")))
            seq = raw.seq + 1
        return found

    async def tip(self, stream: str) -> str:
        js = await self.connect()
        where = await self.ensure_stream(stream)
        try:
            raw = await js.get_last_msg(where.stream, where.subject)
        except nats.js.errors.NotFoundError:
            return "0"
        return str(raw.seq)

    async def delete_entries(self, stream: str, entry_ids: Sequence[str]) -> int:
        js = await self.connect()
        where = await self.ensure_stream(stream)
        removed = 0
        for entry_id in entry_ids:
            with contextlib.suppress(nats.js.errors.NotFoundError):  # deleted already
                removed += bool(await js.delete_msg(where.stream, int(entry_id)))
        return removed

    async def redrive(self, dlq_stream: str, entry_id: str, original: dict[str, str]) -> str:
        """The original message back on its source stream, then its dead letter deleted
        (no transaction over two streams: a crash in between leaves the letter to redrive
        again, and the receivers' guards drop the second copy). Its ``Nats-Msg-Id`` names
        the dead letter, so that the duplicate window, which has seen the message id, does
        not drop it."""
        source = self.settings.streams.source_of_dead_letters(dlq_stream)
        msg_id = f"redrive/{dlq_stream}/{entry_id}"
        (new_id,) = await self._publish([(source, original)], [msg_id])
        await self.delete_entries(dlq_stream, [entry_id])
        return new_id

    async def read(
        self, cursors: dict[str, str], *, count: int, block_ms: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """Polls the subjects (direct gets) every 50 ms until something is there or
        ``block_ms`` has passed: JetStream has no blocking read outside a consumer."""
        deadline = time.monotonic() + block_ms / 1000
        while True:
            found = [
                (stream, entry_id, fields)
                for stream, cursor in cursors.items()
                for entry_id, fields in await self.entries(stream, after=cursor, count=count)
            ]
            if found or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.05)

    async def held(self, namespace: str, saga: str) -> list[str]:
        board = await self.bucket("held", HELD_TTL_S)
        try:
            keys = await board.keys(filters=[f"{subjects.token(saga)}.>"])
        except nats.js.errors.NoKeysError:
            return []
        found = []
        for key in keys:
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):  # expired meanwhile
                found.append(((await board.get(key)).value or b"").decode())
        return found

    async def has_group(self, stream: str, group: str) -> bool:
        where = subjects.place(stream)
        try:
            await (await self.connect()).consumer_info(where.stream, subjects.durable(group, stream))
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def group_state(self, stream: str, group: str) -> GroupState | None:
        where = subjects.place(stream)
        try:
            info = await (await self.connect()).consumer_info(where.stream, subjects.durable(group, stream))
        except nats.js.errors.NotFoundError:
            return None
        # Not yet delivered, delivered and not acknowledged, pull requests waiting (its readers).
        return GroupState(lag=info.num_pending, pending=info.num_ack_pending or 0, consumers=info.num_waiting or 0)

    async def dead_letter_streams(self, namespace: str) -> list[str]:
        js = await self.connect()
        name = subjects.family_stream(namespace, subjects.DLQ)
        try:
            info = await js.stream_info(name, subjects_filter=subjects.family_subjects(namespace, subjects.DLQ))
        except nats.js.errors.NotFoundError:
            return []
        return sorted(subjects.logical(namespace, subject) for subject in (info.state.subjects or {}))

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
        """As ``redis_streams.Bus.subscribe``: one consumer of ``group``'s durable."""
        if self._started:
            raise RuntimeError("subscribe before start()")
        express = is_express(stream)
        sub = Subscription(
            stream=stream,
            group=group or self.service,
            dedupe=dedupe,
            max_records=max_records or self.settings.max_records,
            on_dead_letter=on_dead_letter,
            express=express,
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
        return sub

    def watch(self, stream: str, group: str) -> None:
        self._watched.append((stream, group))

    def _consumer_config(self, sub: Subscription) -> ConsumerConfig:
        assert sub.place is not None
        return ConsumerConfig(
            durable_name=sub.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.reclaim_idle_ms / 1000,
            max_deliver=-1,
            filter_subject=sub.place.subject,
            max_ack_pending=-1,
            max_waiting=4096,
        )

    async def _bind(self, sub: Subscription) -> bool:
        """Make ``sub``'s durable consumer if missing, and bind a pull subscription to it;
        True when the consumer was made."""
        assert sub.place is not None
        await self.ensure_stream(sub.stream)
        made = False
        try:
            await self.js.consumer_info(sub.place.stream, sub.durable)
        except nats.js.errors.NotFoundError:
            await self.js.add_consumer(sub.place.stream, self._consumer_config(sub))
            made = True
        if sub.pull is not None:
            with contextlib.suppress(nats.errors.Error):  # the old binding may be gone with its consumer
                await sub.pull.unsubscribe()
        sub.pull = await self.js.pull_subscribe_bind(durable=sub.durable, stream=sub.place.stream)
        return made

    async def start(self) -> None:
        await self.connect()
        for sub in self._subscriptions:
            await self._bind(sub)
        self._started = True
        self._stopping = False
        self._readers = [
            asyncio.create_task(self._read_forever(sub), name=f"bus-reader-{sub.stream}") for sub in self._subscriptions
        ]
        if self._subscriptions:
            self._stats = JetStreamStats(self, [(s.stream, s.group) for s in self._subscriptions] + self._watched)
            WATCHED.sources.append(self._stats)  # type: ignore[arg-type]
            self._background = [asyncio.create_task(self._keep_in_progress(), name="bus-heartbeat")]

    async def _read_forever(self, sub: Subscription) -> None:
        """Fetch and handle batches until ``stop``: the batch in hand is finished first."""
        outage = Outage(f"bus reader {sub.stream}")
        attempts = retrying(outage)
        while not self._stopping:
            try:
                try:
                    await self._read_once(sub)  # the common case, without the retry machinery
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    await attempts(self._read_once, sub)  # an outage: ridden out with backoff
                    outage.passed()
            except Exception:  # a bug must not stop reading for good: what it held comes again
                log.exception("bus reader of %s failed; reading on in a second", sub.stream)
                metrics.BUS_READER_FAILURES.labels(sub.stream).inc()
                await asyncio.sleep(1.0)

    async def _read_once(self, sub: Subscription) -> None:
        try:
            msgs = await sub.pull.fetch(sub.max_records, timeout=self.settings.block_ms / 1000)
        except TimeoutError:  # nothing came within block_ms (nats-py raises its own or asyncio's)
            return
        except nats.js.errors.NotFoundError:
            await self._heal(sub)
            return
        await self._handle(sub, msgs)

    async def _heal(self, sub: Subscription) -> None:
        """The consumer is gone (deleted, or the server lost it): made again, from the
        first message, as the keeper makes a Redis group again."""
        if await self._bind(sub):
            metrics.GROUPS_RECREATED.labels(sub.stream, sub.group).inc()
            log.warning("consumer %s of %s was gone: made again", sub.durable, sub.stream)

    async def _handle(self, sub: Subscription, msgs: Sequence[Msg]) -> None:
        deliveries = []
        for m in msgs:
            meta = m.metadata
            entry_id = str(meta.sequence.stream)
            sub.messages[entry_id] = m
            deliveries.append(
                Delivery(
                    stream=sub.stream, entry_id=entry_id, fields=fields_of(m.data), delivery_count=meta.num_delivered
                )
            )
        try:
            await self.process(sub, deliveries)
        finally:
            sub.messages.clear()

    async def _keep_in_progress(self) -> None:
        """Tell the server, every third of AckWait, that what this consumer holds is not
        abandoned (``in_progress`` restarts its AckWait without counting a delivery): every
        message of a batch in hand, not only the one a handler works on, since the others
        wait for their turn or for the batch's commit, and a slow batch would otherwise see
        them redelivered and worked twice."""
        period = self.settings.reclaim_idle_ms / 3000
        while True:
            await asyncio.sleep(period)
            for sub in self._subscriptions:
                for entry_id, m in list(sub.messages.items()):
                    try:
                        await m.in_progress()
                    except nats.errors.Error as exc:  # the server is away: AckWait decides
                        log.debug("in_progress for %s failed: %r", entry_id, exc)

    async def process(self, sub: Subscription, deliveries: list[Delivery]) -> ch.BatchOutcome:
        """One batch through the chain, then its commit; a message neither acked nor
        dead-lettered is left unanswered, to come again after the reclaim time. An express
        lane's batch holds this process's normal lanes meanwhile, as on Redis."""
        return await self.lanes.in_turn(sub.express, lambda: self._process(sub, deliveries))

    async def _process(self, sub: Subscription, deliveries: list[Delivery]) -> ch.BatchOutcome:
        assert sub.run is not None and sub.counters is not None
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
        await OUTAGES.ride_out(lambda: self._commit(sub, batch))
        sub.counters.count(batch.outcome)
        return batch.outcome

    async def _commit(self, sub: Subscription, batch: ch.Batch) -> None:
        if batch.outputs:
            await self._publish(batch.outputs)
            metrics.PUBLISHED.inc(len(batch.outputs))
        dead_ids: list[str] = []
        if batch.dead:
            letters = [
                (self.settings.streams.dead_letters(d.stream), dead_letter_fields(self.settings, sub.group, d))
                for d in batch.dead
            ]
            # One dead letter per delivery dead-lettered, however often this commit runs.
            dead_ids = await self._publish(
                letters, [f"dlq/{sub.group}/{d.stream}/{d.entry_id}/{d.delivery_count}" for d in batch.dead]
            )
        if sub.dedupe and batch.done:
            done = await self.bucket("done", self.settings.idempotency_ttl_s)
            await asyncio.gather(*(done.put(self._done_key(sub, m), b"1") for m in batch.done))
        # Each message leaves ``messages`` once answered: a commit done again after an
        # outage does not ack it twice.
        for entry_id in batch.ack:
            m = sub.messages.pop(entry_id, None)
            if m is not None:
                await m.ack()
        # What is left unacked (failed) comes back when its AckWait, the reclaim time, runs
        # out: a nak with that delay would do the same, and trips nats-server 2.9's
        # redelivery of the wrong message (docs/decisions/0021).
        if batch.dead and sub.on_dead_letter is not None:
            await notify_dead(sub.on_dead_letter, sub.stream, batch.dead, dead_ids, self.publish)

    def _seen_before(self, sub: Subscription) -> ch.SeenBefore:
        async def seen_before(message_ids: Sequence[str]) -> list[bool]:
            done = await self.bucket("done", self.settings.idempotency_ttl_s)

            async def one(message_id: str) -> bool:
                try:
                    await done.get(self._done_key(sub, message_id))
                except nats.js.errors.KeyNotFoundError:
                    return False
                return True

            return list(await OUTAGES.ride_out(lambda: asyncio.gather(*(one(m) for m in message_ids))))

        return seen_before

    def _done_key(self, sub: Subscription, message_id: str) -> str:
        return f"{subjects.token(sub.group)}.{subjects.key(message_id)}"

    async def check_groups(self) -> None:
        """Raise unless every consumer this bus reads through exists."""
        for sub in self._subscriptions:
            assert sub.place is not None
            try:
                await self.js.consumer_info(sub.place.stream, sub.durable)
            except nats.js.errors.NotFoundError:
                raise LookupError(f"no consumer {sub.durable} on {sub.place.stream} ({sub.stream})") from None

    async def stop(self) -> None:
        """Stop reading after the batch in hand; what is unacked comes again to another
        consumer after AckWait. Each part has ``stop_timeout_s``."""
        deadline = self.settings.stop_timeout_s
        if self._stats is not None:
            WATCHED.sources.remove(self._stats)  # type: ignore[arg-type]
            self._stats = None
        self._stopping = True
        readers, self._readers = self._readers, []
        if readers:
            _, late = await asyncio.wait(readers, timeout=deadline)
            for task in late:
                log.warning("bus reader %s did not stop within %.0f s; cancelled", task.get_name(), deadline)
                task.cancel()
        background, self._background = self._background, []
        for task in background:
            task.cancel()
        if background:
            await asyncio.wait(background, timeout=deadline)
        nc, self._nc, self._js = self._nc, None, None
        self._buckets.clear()
        self._ready_streams.clear()
        for sub in self._subscriptions:
            sub.pull = None
        self._started = False
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), deadline)
            except TimeoutError:
                log.warning("the NATS connection did not close within %.0f s; left behind", deadline)


def _sequence(cursor: str | None) -> int:
    """A cursor as a stream sequence: ``0-0`` and ``0`` (Redis's "from the start") are 0."""
    if not cursor or cursor in ("0-0", "-"):
        return 0
    if not cursor.isdigit():
        raise ValueError(f"{cursor!r} is not a JetStream stream sequence (a whole number)")
    return int(cursor)


class HeldBoard:
    """As ``redis_streams.HeldBoard``, in the key-value bucket ``<ns>_held`` (entries
    expire after 30 s unless shown again): ``<saga>.<entry>``."""

    def __init__(self, bus: JetStreamBus, group: str) -> None:
        self.bus = bus
        self.group = group

    def _key(self, d: Delivery) -> str | None:
        env = d.envelope
        if env is None or not env.correlation_id:
            return None
        return f"{subjects.token(env.correlation_id)}.{subjects.key(f'{self.bus.consumer}/{d.stream}/{d.entry_id}')}"

    async def show(self, d: Delivery, span: Span) -> None:
        key = self._key(d)
        if key is None or d.envelope is None:
            return
        held = Held(
            service=self.group,
            consumer=self.bus.consumer,
            type=d.envelope.type,
            step=str(getattr(d.envelope.message, "step", "")),
            store=STORES.get(span.store, span.store),
            since=span.since,
        )
        try:
            board = await asyncio.wait_for(self.bus.bucket("held", HELD_TTL_S), 2.0)
            await asyncio.wait_for(board.put(key, json.dumps(dataclasses.asdict(held)).encode()), 2.0)
        except Exception as exc:  # shown when possible; the log line and the condition say it anyway
            log.debug("could not show held %s: %r", d.entry_id, exc)

    async def clear(self, d: Delivery) -> None:
        key = self._key(d)
        if key is None:
            return
        try:
            board = await asyncio.wait_for(self.bus.bucket("held", HELD_TTL_S), 2.0)
            await asyncio.wait_for(board.purge(key), 2.0)
        except Exception as exc:  # it expires on its own
            log.debug("could not clear held %s: %r", d.entry_id, exc)


class JetStreamSentinel:
    """``sentinel.Sentinel`` on JetStream: the key ``sentinel`` of bucket ``<ns>_bus``
    holds the creation time of the command stream the relay last re-published to. Missing
    (the server lost its store, the bucket was deleted), unfinished, or naming another
    creation time (the stream was deleted and made again): what was published may be gone."""

    KEY = "sentinel"

    def __init__(self, bus: JetStreamBus, namespace: str) -> None:
        self.bus = bus
        self.namespace = namespace
        self._revision: int | None = None

    async def _identity(self) -> str:
        where = await self.bus.ensure_stream(self.bus.settings.streams.commands("orchestrator"))
        info = await self.bus.js.stream_info(where.stream)
        return str(info.created)

    async def _bucket(self) -> KeyValue:
        return await self.bus.bucket("bus", 0)

    async def forgotten(self) -> str | None:
        identity = await self._identity()
        try:
            seen = (await (await self._bucket()).get(self.KEY)).value or b""
        except nats.js.errors.KeyNotFoundError:
            return "the sentinel key is missing (JetStream lost its store, or the bucket was deleted)"
        text = seen.decode()
        if text == REPUBLISHING:
            return "a re-publish was left unfinished"
        if text != identity:
            return f"the command stream was made again (created {identity}, was {text})"
        return None

    async def begin(self) -> None:
        self._revision = await (await self._bucket()).put(self.KEY, REPUBLISHING.encode())

    async def done(self) -> bool:
        if self._revision is None:
            return False
        try:
            await (await self._bucket()).update(self.KEY, (await self._identity()).encode(), last=self._revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except nats.js.errors.NotFoundError:
            return False
        return True


class JetStreamStats:
    """The groups' state for ``streamstats.WATCHED``, from consumer and stream info on
    scrape: lag (``num_pending``), pending (``num_ack_pending``), waiting pulls as
    consumers, the stream's and its dead letters' lengths (by subject). JetStream does not
    say how long an acked-pending message has been idle, so the two oldest-pending gauges
    are not reported on it."""

    def __init__(self, bus: JetStreamBus, groups: Sequence[tuple[str, str]]) -> None:
        self.bus = bus
        self.groups = list(groups)
        self.reading: dict[str, list[tuple[tuple[str, ...], float]]] = {}

    async def refresh(self) -> None:
        reading: dict[str, list[tuple[tuple[str, ...], float]]] = {
            k: [] for k in ("lag", "pending", "consumers", "length", "dead")
        }
        js = self.bus.js
        for stream in dict.fromkeys(s for s, _ in self.groups):
            for key, name in (("length", stream), ("dead", self.bus.settings.streams.dead_letters(stream))):
                where = subjects.place(name)
                try:
                    info = await js.stream_info(where.stream, subjects_filter=where.subject)
                except nats.errors.Error:
                    continue
                reading[key].append(((stream,), float((info.state.subjects or {}).get(where.subject, 0))))
        for stream, group in self.groups:
            where = subjects.place(stream)
            try:
                c = await js.consumer_info(where.stream, subjects.durable(group, stream))
            except nats.errors.Error:
                continue
            reading["lag"].append(((stream, group), float(c.num_pending or 0)))
            reading["pending"].append(((stream, group), float(c.num_ack_pending or 0)))
            reading["consumers"].append(((stream, group), float(c.num_waiting or 0)))
        self.reading = reading
