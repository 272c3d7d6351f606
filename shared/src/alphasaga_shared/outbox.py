"""The event log is the outbox: outgoing messages are appended as rows of the stream
``outbox:<correlation id>`` in the same transaction as the decision that produced them,
and the relay publishes committed rows to Redis in commit order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import metrics, telemetry
from .eventstore import (
    START,
    Checkpoint,
    Conn,
    EventStore,
    NewEvent,
    OutboxRef,
    Position,
    RecordedEvent,
    outbox_channel,
)
from .loops import Outage, retrying
from .outbox_rows import read_notice, wire_fields

if TYPE_CHECKING:  # the bus's modules load faststream and the transports' clients
    from .bus.transport import EntrySink

log = logging.getLogger(__name__)

RELAY_POSITION = "relay:outbox"
# One relay publishes at a time (the holder of this advisory lock); the others wait.
RELAY_LOCK = "alphasaga-relay"
LOCK_POLL_S = 1.0
# After a wake-up that found nothing to read (the commit is held back behind an older
# transaction still running), how often and for how long to look again before the poll.
HELD_BACK_POLL_S = 0.05
HELD_BACK_S = 10.0
# How long a new lock holder waits before reading the position, so that the holder whose
# session was cut (it stops at once when it learns it) has saved where it got to.
HANDOVER_GRACE_S = 0.5
# How long a relay giving up the lock waits for its direct publishes under way to finish,
# so that it can save them as published (well inside HANDOVER_GRACE_S).
SETTLE_WAIT_S = 0.2
# A claim the tail has not met after this long was met before it was made (the row was
# published twice, which receivers deduplicate): forget it.
CLAIM_TTL_S = 60.0
# How often the lock holder asks whether Redis forgot what it published (sentinel.py).
SENTINEL_CHECK_S = 1.0
# Notices (NOTIFYs carrying rows) kept while the relay is busy, and verdicts on their
# senders, at most; past this the rows are left to the tail, which reads every committed
# row anyway, and the verdicts no longer current are dropped.
MAX_NOTICES = 10_000
# How long a verdict on whether a NOTIFY's sender may speak for the outbox is kept (a
# backend's pid is reused only after it ended; a verdict is looked up again after this).
SENDER_VERDICT_S = 30.0
# How long the ids of rows the tail published are remembered, so that a notice met after
# the tail had read its rows does not publish them again (it comes within a pass).
TAILED_TTL_S = 10.0


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
    direct path (``publishing``) lets the process holding the relay lock publish
    the rows it has just committed itself, at once, instead of a NOTIFY, a wake-up and a
    read later (docs/decisions/0004). Such rows are *claimed*; the tail
    skips a claimed row when it reaches it, and saves no position past a row whose direct
    publish is unfinished, so a crash at any point leaves it to the tail of the next
    relay (at least once, as before). A direct publish that fails hands its rows back to
    the tail.

    The holder may publish its own rows past a commit of another process that is still
    running, which the tail must wait for: the ids of the rows published past the position
    are saved with it (``Checkpoint.published_ahead``), and the relay that takes over
    passes over them as claimed. The relay reads and saves through the session that holds
    its lock, so a cut of the pool's sessions does not stop it, and each holder bumps the
    checkpoint's epoch: a relay that lost the lock cannot overwrite what its successor read.

    A small commit in a process that does not hold the lock carries its rows in its NOTIFY
    (``outbox_rows.notice``), and the holder publishes them from there, claimed as a direct
    publish is, without reading them back (docs/decisions/0030). Such a notice is trusted
    only from a session of the relay's own database role: any role may NOTIFY, and the
    front ends' may add only starts to the outbox. The tail still reads every row's
    position and publishes whatever no notice brought.

    Rows reach Redis in commit order per saga, as each decision follows the reply to the
    previous one; across sagas the paths may interleave.
    """

    def __init__(
        self,
        store: EventStore,
        sink: EntrySink,
        *,
        batch: int = 500,
        poll_ms: int = 50,
        save_every_ms: int = 100,
        after_publish: Callable[[], None] | None = None,
        namespace: str | None = None,
    ) -> None:
        self.store = store
        self.sink = sink  # the bus, or its publishing part (bus/transport.py)
        self.batch = batch
        self.poll_s = poll_ms / 1000
        # The position lives in memory and is saved at most this often: a crash
        # re-publishes what was sent since the last save, which receivers deduplicate.
        self.save_every_s = save_every_ms / 1000
        self._position: Position | None = None
        # The session holding the lock, which the relay reads and saves through, and the
        # checkpoint last saved (or taken, with its epoch) through it.
        self._session: Conn | None = None
        self._saved = Checkpoint(START)
        self._saved_at = 0.0
        self._wake = asyncio.Event()
        # The direct path: when each claimed event id was claimed, and whether its publish
        # has finished; ids the tail skipped while their publish was unfinished; rows a
        # failed direct publish handed back after the tail had skipped them.
        self._holding = False
        self._claimed: dict[uuid.UUID, _Claim] = {}
        self._skipped_unconfirmed: set[uuid.UUID] = set()
        self._handed_back: list[tuple[str, dict[str, str]]] = []
        # Notices: (sender's pid, payload) not yet published; whether each sender's role may
        # speak for the outbox, and since when that is known; rows the tail published lately.
        self._notices: list[tuple[int, str]] = []
        self._senders: dict[int, tuple[bool, float]] = {}
        self._tailed: dict[uuid.UUID, float] = {}  # in the order published, so the oldest first
        # A test's hook between publishing and saving the position (the crash test exits there).
        self._after_publish = after_publish
        # Whether Redis forgot (None: not watched, for tests of the publishing paths alone).
        self._sentinel = sink.forgetting(namespace) if namespace is not None else None
        self._sentinel_checked = 0.0
        # The outbox streams whose terminal row the tail has passed, closed at the next save
        # (``open_outboxes``: what a re-publish reads, docs/decisions/0028).
        from alphasaga_contracts.saga import terminal_event_types

        self._ended_types = terminal_event_types()
        self._ended_streams: set[str] = set()

    @contextlib.asynccontextmanager
    async def publishing(self, rows: Sequence[NewEvent]) -> AsyncIterator[bool]:
        """Wrap the commit of outbox ``rows`` made by this process (see the class docstring).

        While this relay holds the lock, the rows are claimed before the commit, so that the
        tail can never read them unclaimed, whatever the commit's timing; once the commit
        returns they are published at once. Yields whether they will be: if not, the commit
        should NOTIFY the lock holder. A commit that raises leaves them to the tail."""
        claimed = self._holding and bool(rows)
        if claimed:
            now = time.monotonic()
            for row in rows:
                self._claimed[row.event_id] = _Claim(now)
        try:
            yield claimed
        except BaseException:
            if claimed:  # committed or not: if the tail met them they were, and it publishes them
                self._unclaim([(row.event_id, *wire_fields(row)) for row in rows])
            raise
        if claimed:
            await self._publish_claimed([(row.event_id, *wire_fields(row)) for row in rows])
        elif rows:
            self.wake()  # the tail publishes them (here, or in the lock holder, via NOTIFY)

    def _unclaim(self, rows: Sequence[tuple[uuid.UUID, str, dict[str, str]]]) -> None:
        """Leave claimed rows to the tail; hand back those it has already passed over."""
        for event_id, stream, fields in rows:
            if self._claimed.pop(event_id, None) is None and event_id in self._skipped_unconfirmed:
                self._skipped_unconfirmed.discard(event_id)
                self._handed_back.append((stream, fields))
        self.wake()

    async def _publish_claimed(self, rows: Sequence[tuple[uuid.UUID, str, dict[str, str]]]) -> None:
        """Publish claimed rows (event id, stream, entry fields); on failure leave them to the tail."""
        if not self._holding:  # the lock was lost during the commit: one relay publishes at a time
            self._unclaim(rows)
            return
        try:
            with telemetry.span("relay publish"):
                await self.sink.publish_entries([(stream, fields) for _, stream, fields in rows])
        except BaseException as exc:  # Redis down, cancelled, or a bug: the tail publishes them
            log.warning("direct publish of %d outbox rows failed, left to the relay's tail: %r", len(rows), exc)
            self._unclaim(rows)
            if not isinstance(exc, Exception):
                raise
            return
        metrics.RELAYED.inc(len(rows))
        for event_id, _, _ in rows:
            claim = self._claimed.get(event_id)
            if claim is not None:
                claim.published = True
            self._skipped_unconfirmed.discard(event_id)

    async def _publish_notices(self) -> None:
        """Publish the rows that commits of other processes carried in their NOTIFYs, claimed
        as a direct publish's are, leaving out those the tail or a claim got to first."""
        notices, self._notices = self._notices, []
        if not self._holding:
            return
        trusted = await self._trusted_senders({pid for pid, _ in notices})
        now = time.monotonic()
        rows: list[tuple[uuid.UUID, str, dict[str, str]]] = []
        for pid, payload in notices:
            if pid not in trusted:
                continue
            try:
                carried = read_notice(payload)
            except ValueError as exc:  # left to the tail, as every row is
                log.warning("an outbox notice from backend %d is not one: %s", pid, exc)
                continue
            for row in carried:
                if row[0] not in self._claimed and row[0] not in self._tailed:
                    self._claimed[row[0]] = _Claim(now)
                    rows.append(row)
        if rows:
            await self._publish_claimed(rows)

    async def _trusted_senders(self, pids: set[int]) -> set[int]:
        """Which of these backends log in as this relay's own role (looked up once in a while)."""
        now = time.monotonic()
        unknown = [p for p in pids if p not in self._senders or now - self._senders[p][1] >= SENDER_VERDICT_S]
        if unknown:
            same = await self.store.same_role_sessions(unknown, conn=self._session)
            for pid in unknown:
                self._senders[pid] = (pid in same, now)
            if len(self._senders) > MAX_NOTICES:
                self._senders = {p: v for p, v in self._senders.items() if now - v[1] < SENDER_VERDICT_S}
        return {pid for pid in pids if self._senders[pid][0]}

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

    def _notified(self, _conn: object, pid: int, _channel: str, payload: object) -> None:
        """NOTIFY from a commit in any process: the same hint, and the rows it may carry."""
        if isinstance(payload, str) and payload and self._holding and len(self._notices) < MAX_NOTICES:
            self._notices.append((pid, payload))
        self._wake.set()

    def _resume(self, checkpoint: Checkpoint) -> None:
        """Carry on from ``checkpoint``, just taken with the lock, passing over the rows
        published past it. If no other relay has held the lock since this one did, where
        this one got to is right, saved or not (it may have lost the lock before it could
        save); otherwise the other relay has published everything past the checkpoint that
        this one still meant to."""
        if self._position is None or checkpoint.epoch != self._saved.epoch + 1:
            self._position = checkpoint.position
            self._handed_back.clear()
            self._skipped_unconfirmed.clear()
        self._notices.clear()
        self._tailed.clear()
        now = time.monotonic()
        for event_id in checkpoint.published_ahead:
            self._claimed.setdefault(event_id, _Claim(now, published=True))
        self._saved = checkpoint

    async def republish_if_forgotten(self) -> int:
        """When Redis forgot what was published (``sentinel.py``), publish again, at once,
        every outbox row of every correlation not ended that was published: those up to the
        position and those published directly past it (the tail publishes the rest);
        returns how many rows."""
        if self._sentinel is None or self._position is None:
            return 0
        self._sentinel_checked = time.monotonic()
        why = await self._sentinel.forgotten()
        if why is None:
            return 0
        await self._sentinel.begin()
        ahead = [event_id for event_id, claim in self._claimed.items() if claim.published]
        ended = sorted(self._ended_types)
        rows = latest_first(await self.store.unfinished_outbox(ended, self._position, ahead, conn=self._session))
        fields = [wire_fields(row) for row in rows]
        for start in range(0, len(fields), self.batch):
            await self._send(fields[start : start + self.batch], [])
        metrics.REPUBLISHED.inc(len(rows))
        if not await self._sentinel.done():
            self._sentinel_checked = 0.0  # forgotten again meanwhile: look again at once
        sagas = len({row.stream_id for row in rows})
        if rows:
            log.warning("Redis forgot: %s; re-published %d outbox rows of %d unfinished sagas", why, len(rows), sagas)
        else:  # a first start on a new Redis looks the same, and lost nothing
            log.info("Redis holds no sentinel of this relay (%s); no unfinished saga to publish again", why)
        return len(rows)

    async def publish_once(self) -> int:
        if self._position is None:
            raise RuntimeError("publish_once runs only while holding the relay lock")
        # Positions and ids first: the rows this process published directly are only
        # passed over, so their content need not be read again.
        refs = await self.store.read_outbox_refs(self._position, limit=self.batch, conn=self._session)
        unclaimed = self._pass_over_claimed(refs)
        handed_back, self._handed_back = self._handed_back, []
        to_publish = list(handed_back)
        tailed: list[uuid.UUID] = []
        if unclaimed:
            read = await self.store.by_positions(unclaimed, conn=self._session)
            to_publish += [wire_fields(row) for row in read]
            tailed = [row.event_id for row in read]
        if to_publish:
            await self._send(to_publish, handed_back)
        self._remember_tailed(tailed)
        self._ended_streams.update(ref.stream_id for ref in refs if ref.type in self._ended_types)
        if refs:
            self._position = refs[-1].position
            metrics.RELAY_LAG.set(max(0.0, time.time() - refs[-1].recorded_at.timestamp()))
        if time.monotonic() - self._saved_at >= self.save_every_s:
            await self.save(self._session)
        return len(refs)

    def _remember_tailed(self, published: Sequence[uuid.UUID]) -> None:
        """Remember the rows the tail published for a while: a notice carrying them may still
        be on its way (its NOTIFY can follow the read that met the commit)."""
        now = time.monotonic()
        self._tailed.update(dict.fromkeys(published, now))
        cutoff = now - TAILED_TTL_S
        while self._tailed:
            oldest = next(iter(self._tailed))
            if self._tailed[oldest] >= cutoff:
                break
            del self._tailed[oldest]

    def _pass_over_claimed(self, refs: Sequence[OutboxRef]) -> list[int]:
        """The positions of ``refs`` no direct publish claimed; a claimed row whose publish
        has not finished is remembered, so that no position is saved past it."""
        unclaimed: list[int] = []
        for ref in refs:
            claim = self._claimed.pop(ref.event_id, None)
            if claim is None:
                unclaimed.append(ref.position.global_position)
            elif not claim.published:
                self._skipped_unconfirmed.add(ref.event_id)  # its direct publish is still under way
        return unclaimed

    async def _send(
        self, to_publish: list[tuple[str, dict[str, str]]], handed_back: list[tuple[str, dict[str, str]]]
    ) -> None:
        try:
            await self.sink.publish_entries(to_publish)
        except BaseException:
            # The position stays before the tail's rows; only handed-back rows need keeping.
            self._handed_back[:0] = handed_back
            raise
        if self._after_publish is not None:
            self._after_publish()
        metrics.RELAYED.inc(len(to_publish))

    async def save(self, conn: Conn | None) -> None:
        """Save the position, and the rows published directly past it, unless the position
        is past rows not yet surely published (then the old checkpoint stays); close the
        outboxes whose end the tail has passed."""
        if self._ended_streams:
            await self.store.close_outboxes(sorted(self._ended_streams), conn=conn)
            self._ended_streams.clear()
        if self._skipped_unconfirmed or self._handed_back or self._position is None:
            return
        cutoff = time.monotonic() - CLAIM_TTL_S
        for event_id in [e for e, claim in self._claimed.items() if claim.at < cutoff]:
            del self._claimed[event_id]  # read by the tail before it was claimed: published twice
        ahead = frozenset(event_id for event_id, claim in self._claimed.items() if claim.published)
        checkpoint = Checkpoint(self._position, ahead, self._saved.epoch)
        if checkpoint != self._saved:
            if not await self.store.save_checkpoint(RELAY_POSITION, checkpoint, conn=conn):
                raise LockLost("another relay has taken the checkpoint")
            self._saved = checkpoint
        self._saved_at = time.monotonic()

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
            self._holding = False  # no direct publish from here on
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
            self._resume(await self.store.take_checkpoint(RELAY_POSITION, conn=session))
            self._session = session
            self._holding = True
            outage.passed()
            log.info("relay is publishing the outbox")
            try:
                await self._publish_while_held(session, lost)
            except SETTLE_ERRORS as exc:
                if lost.is_set() or session.is_closed():  # cut in the middle of a read
                    raise LockLost("the relay lock's session was lost") from exc
                raise
        finally:
            await self._let_go(session)

    async def _publish_while_held(self, session: Conn, lost: asyncio.Event) -> None:
        """Publish, waiting for a wake-up or the poll between passes, until the lock's
        session is lost."""
        held_back_until, woken = 0.0, False
        while True:
            if lost.is_set() or session.is_closed():
                raise LockLost("the relay lock's session was lost")
            if time.monotonic() - self._sentinel_checked >= SENTINEL_CHECK_S:
                await self.republish_if_forgotten()
            if self._notices:
                await self._publish_notices()
            read = await self.publish_once()
            if read >= self.batch:
                continue
            if woken and read == 0:
                # Woken for a commit it cannot read yet: the tail holds back rows
                # behind any transaction still running, so look again soon.
                held_back_until = time.monotonic() + HELD_BACK_S
            wait = HELD_BACK_POLL_S if time.monotonic() < held_back_until else self.poll_s
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancel that comes as the wake-up does (a stop right after a lost lock).
            try:
                async with asyncio.timeout(min(wait, self.poll_s)):
                    await self._wake.wait()
                woken = True
            except TimeoutError:
                woken = False
            self._wake.clear()

    async def _let_go(self, session: Conn) -> None:
        """Stop publishing, save where it got to, and close the lock's session."""
        self._holding = False
        self._session = None
        self._notices.clear()
        settling = asyncio.ensure_future(self._settle(session))
        try:
            await asyncio.shield(settling)
        except asyncio.CancelledError:
            await settling  # being stopped: still save where it got to (it takes < 1 s)
            session.terminate()
            raise
        if session.is_closed():
            session.terminate()
        else:
            await session.close(timeout=2)

    async def _settle(self, session: Conn) -> None:
        """On giving up the lock: let the direct publishes under way finish, then save the
        checkpoint, through the lock's session or, when that is gone, a fresh one (the
        pool's may have been cut with it). Best effort, and no longer than the successor's
        grace: what is not saved here, the next holder publishes again, and receivers
        deduplicate."""
        if self._position is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANDOVER_GRACE_S):
                deadline = time.monotonic() + SETTLE_WAIT_S
                while any(not claim.published for claim in self._claimed.values()) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                if not session.is_closed():
                    with contextlib.suppress(*SETTLE_ERRORS):
                        await self.save(session)
                        return
                with contextlib.suppress(*SETTLE_ERRORS):
                    fresh = await self.store.session(application_name="alphasaga-relay-settle")
                    try:
                        await self.save(fresh)
                    finally:
                        fresh.terminate()


def latest_first(rows: Sequence[RecordedEvent]) -> list[RecordedEvent]:
    """``rows`` (in commit order) with what each correlation's last transaction wrote first,
    then the rest, each part in commit order: after Redis forgot, the messages a saga waits
    on (its last decision's) are queued before those that only make work done again."""
    last = {row.stream_id: row.transaction_id for row in rows}
    newest = [row for row in rows if row.transaction_id == last[row.stream_id]]
    return newest + [row for row in rows if row.transaction_id != last[row.stream_id]]


class LockLost(ConnectionError):
    """The session holding the relay lock is gone: another relay may hold it now."""


# What settling after a lost lock may meet (LockLost: the successor has taken the checkpoint).
SETTLE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


class RelaySettings(BaseSettings):
    """``ALPHASAGA_RELAY_*``: read by the processes that run a relay."""

    model_config = SettingsConfigDict(env_prefix="ALPHASAGA_RELAY_", extra="ignore")
    batch: int = Field(500, ge=1, description="Outbox rows read per pass")
    poll_ms: int = Field(50, ge=1, description="How often the tail looks when no NOTIFY woke it")


def relay_for(
    store: EventStore, sink: EntrySink, namespace: str, *, after_publish: Callable[[], None] | None = None
) -> Relay:
    settings = RelaySettings()
    return Relay(
        store, sink, batch=settings.batch, poll_ms=settings.poll_ms, after_publish=after_publish, namespace=namespace
    )


def main(after_publish: Callable[[], None] | None = None) -> None:
    """``python -m alphasaga_shared.outbox``: the relay alone (the orchestrator also runs one;
    only the holder of the relay lock publishes)."""
    from .runner import ServiceContext, run_service

    async def setup(ctx: ServiceContext) -> None:
        relay = relay_for(ctx.store, ctx.bus, ctx.settings.namespace, after_publish=after_publish)
        ctx.background.append(relay.run)
        metrics.on_scrape(relay.measure_backlog)

    run_service("relay", setup)


if __name__ == "__main__":
    main()
