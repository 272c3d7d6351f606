"""Consumer groups that heal (docs/decisions/0014).

Redis can forget a group with its stream (a restart without persistence, a failover,
FLUSHDB). faststream then stops the subscriber for good at its next read (``NOGROUP``),
and the reclaimer's ``XAUTOCLAIM`` meets the same error. Nothing would read the stream
again. The keeper makes the group again at ``0`` (so nothing written since, by the relay's
re-publish or anyone, is skipped), starts the subscriber again, logs one line and counts
it (``alphasaga_bus_groups_recreated_total``).

While a group is missing, the condition ``consumer_groups`` holds (readiness fails); one
that cannot be made again within ``group_recovery_s`` (a read-only replica, no memory,
no permission) fails liveness and the runner's watchdog stops the process with one line.
A lost connection is not this keeper's matter: it is an outage, which the loops ride out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .. import metrics
from ..conditions import CONDITIONS, Conditions
from ..loops import is_transient

log = logging.getLogger("alphasaga_shared.bus")

CONDITION = "consumer_groups"


class Subscription(Protocol):
    stream: str
    group: str


def is_group_gone(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis saying the group or its stream is gone: ``NOGROUP``, ``no
    such key`` (``XINFO``), or a blocked read ended because its stream was deleted."""
    if not isinstance(exc, ResponseError):
        return False
    text = str(exc)
    return text.startswith("NOGROUP") or "no such key" in text or "no longer exists" in text


async def create_group(client: Redis, stream: str, group: str) -> bool:
    """Create ``group`` at id 0, and its stream if needed (faststream would create it at
    ``$``). True when it was created, False when it existed."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


class GroupKeeper:
    """Makes missing groups again and restarts their readers (``restart``: start the
    subscription's faststream subscriber again if it stopped)."""

    def __init__(
        self,
        client: Redis,
        recovery_s: float,
        restart: Callable[[Any], Awaitable[None]],
        conditions: Conditions = CONDITIONS,
    ) -> None:
        self.client = client
        self.recovery_s = recovery_s
        self.restart = restart
        self.conditions = conditions
        self._missing: set[tuple[str, str]] = set()

    async def heal(self, sub: Subscription) -> None:
        """``sub``'s group was found gone: make it again and read on. An error that is not
        an outage leaves the condition held, to be tried again on the next pass."""
        key = (sub.stream, sub.group)
        first = key not in self._missing  # a failure is logged once, not on every pass
        self._missing.add(key)
        self.conditions.begin(CONDITION, f"consumer group {sub.group} on {sub.stream} is gone", bound_s=self.recovery_s)
        try:
            created = await create_group(self.client, sub.stream, sub.group)
            await self.restart(sub)
        except Exception as exc:
            if is_transient(exc):
                self._settled(key)  # an outage: the loops' matter, not a missing group
                raise
            if first:
                log.error("could not make consumer group %s on %s again: %s", sub.group, sub.stream, exc)
            return
        if created:
            metrics.GROUPS_RECREATED.labels(sub.stream, sub.group).inc()
            log.warning("consumer group %s on %s was gone (Redis forgot it): made again at 0", sub.group, sub.stream)
        self._settled(key)

    def _settled(self, key: tuple[str, str]) -> None:
        self._missing.discard(key)
        if not self._missing:
            self.conditions.end(CONDITION)

    async def heal_stopped(self, subs: Sequence[Subscription], running: Callable[[Any], bool]) -> None:
        """Heal the subscriptions whose reader stopped (faststream stops at ``NOGROUP``)."""
        for sub in subs:
            if not running(sub):
                await self.heal(sub)
