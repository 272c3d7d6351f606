"""Taking over what a dead or failing consumer left pending (DESIGN.md §2: faststream's
nack does nothing on Redis, and a restarted consumer never re-reads its own pending list).

* The reclaimer claims entries idle past ``reclaim_idle_ms`` (``XAUTOCLAIM``) and feeds
  them through the same chain as fresh reads, with their delivery counts from
  ``XPENDING``; entries trimmed while pending are counted and logged, never dropped
  silently. Consumers idle a long time and holding nothing are deleted.
* A group found gone (Redis forgot it) on the way is handed to the keeper
  (``groups.py``), which makes it again; so is one whose reader stopped.
* The heartbeat re-claims to this consumer, every third of the idle time, the entries its
  handlers are working on (``XCLAIM … JUSTID`` resets their idle time without counting a
  delivery), so a slow handler is never taken for a dead one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .. import metrics
from ..config import Settings
from ..entries import as_text
from ..loops import run_forever
from ..wire import Delivery
from .groups import GroupKeeper, is_group_gone

log = logging.getLogger("alphasaga_shared.bus")


class Subscription(Protocol):
    """What the reclaimer needs of a subscription (``redis_streams.Subscription`` has it)."""

    stream: str
    group: str
    autoclaim_cursor: str
    in_flight: set[str]
    reader: Any


Process = Callable[[Any, list[Delivery]], Awaitable[Any]]


class Reclaimer:
    def __init__(
        self,
        client: Redis,
        settings: Settings,
        subscriptions: Sequence[Subscription],
        process: Process,
        keeper: GroupKeeper | None = None,
    ) -> None:
        self.client = client
        self.keeper = keeper
        self.settings = settings
        self.consumer = settings.consumer
        self.subscriptions = subscriptions
        self.process = process

    async def keep_claimed(self) -> None:
        """The heartbeat, forever."""
        period = self.settings.reclaim_idle_ms / 3000

        async def one_pass() -> bool:
            for sub in self.subscriptions:
                if sub.in_flight:
                    try:
                        await self.client.xclaim(
                            sub.stream,
                            sub.group,
                            self.consumer,
                            min_idle_time=0,
                            message_ids=list[Any](sub.in_flight),
                            justid=True,
                        )
                    except ResponseError as exc:
                        if not is_group_gone(exc):
                            raise  # gone: nothing to keep claimed; the reclaimer makes it again
            return False

        await run_forever("bus heartbeat", one_pass, lambda: asyncio.sleep(period))

    async def reclaim_forever(self) -> None:
        """A loop per subscription, so that an entry taken over on one stream (whose handler
        may run for minutes) never holds up the take-over on another: an express lane's
        reclaim does not wait behind a normal one's. Beside them, the keeper and the
        clean-up of idle consumers."""
        period = self.settings.reclaim_interval_ms / 1000
        loops = [self._reclaim_forever(sub, period) for sub in self.subscriptions]
        await asyncio.gather(self._tend_forever(period), *loops)

    async def _reclaim_forever(self, sub: Subscription, period: float) -> None:
        async def one_pass() -> bool:
            await self._guarded(sub, self._reclaim_all)
            return False

        await run_forever(f"bus reclaimer of {sub.stream}", one_pass, lambda: asyncio.sleep(period))

    async def _tend_forever(self, period: float) -> None:
        last_cleanup = 0.0

        async def one_pass() -> bool:
            nonlocal last_cleanup
            if self.keeper is not None:
                await self.keeper.heal_stopped(self.subscriptions, lambda sub: sub.reader is None or sub.reader.running)
            if time.monotonic() - last_cleanup > self.settings.dead_consumer_idle_ms / 2000:
                last_cleanup = time.monotonic()
                for sub in self.subscriptions:
                    await self._guarded(sub, self.remove_idle_consumers)
            return False

        await run_forever("bus reclaimer", one_pass, lambda: asyncio.sleep(period))

    async def _reclaim_all(self, sub: Subscription) -> None:
        while await self.reclaim_once(sub):
            pass

    async def _guarded(self, sub: Subscription, work: Callable[[Subscription], Awaitable[object]]) -> None:
        """``work`` on ``sub``; a group found gone on the way goes to the keeper."""
        try:
            await work(sub)
        except ResponseError as exc:
            if self.keeper is None or not is_group_gone(exc):
                raise
            await self.keeper.heal(sub)

    async def reclaim_once(self, sub: Subscription) -> int:
        """Claim and process one page of entries idle past ``reclaim_idle_ms``; returns how
        many were claimed (0 when the pending list has been walked to its end)."""
        reply = await self.client.xautoclaim(
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
        claimed = len(entries)
        # An entry this process holds through an outage is its own, not one to take over.
        entries = [(eid, data) for eid, data in entries if eid.decode() not in sub.in_flight]
        if not entries:
            return claimed
        ids = [eid.decode() for eid, _ in entries]
        counts = await self._delivery_counts(sub, ids)
        deliveries = [
            Delivery(stream=sub.stream, entry_id=eid, fields=as_text(data), delivery_count=counts.get(eid, 1))
            for eid, (_, data) in zip(ids, entries, strict=True)
        ]
        metrics.RECLAIMED.labels(sub.stream, sub.group).inc(len(deliveries))
        log.info("reclaimed %d idle entries of %s", len(deliveries), sub.stream)
        await self.process(sub, deliveries)
        return claimed

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
