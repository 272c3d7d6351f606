"""Background loops that ride out outages.

A loop runs one pass after another. A pass that fails for a transient reason (a lost or
refused connection to PostgreSQL or Redis) is retried with exponential backoff and
jitter (tenacity); the outage is logged once when it begins and once when it ends, and
counted in ``alphasaga_outages_total``. Any other exception ends the loop, and the
service runner stops the process with that reason.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from . import metrics
from .outages import OUTAGES, classify, is_nats_outage

log = logging.getLogger(__name__)

# What a server that went away, restarted, failed over or cut our session looks like.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.CannotConnectNowError,  # the server is starting or shutting down
    asyncpg.AdminShutdownError,  # pg_terminate_backend, a restart, an idle-session killer
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # a connection that was closed or released under us
    asyncpg.InternalClientError,  # a connection left mid-operation by a lost session
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage to ride out rather than a failure to report. Redis's
    errors are looked up only if redis-py is loaded: without it, none can be raised (and
    a process that only reads PostgreSQL does not pay for importing it)."""
    if isinstance(exc, _TRANSIENT):
        return True
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is not None and isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return True
    return is_nats_outage(exc)


# One pass of a loop: True when there is more to do at once, False to pause first.
Pass = Callable[[], Awaitable[bool]]


class Outage:
    """Logs and counts an outage once, however many retries it takes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None
        self._counter = metrics.OUTAGES.labels(name)
        self._store: str | None = None  # the store it waits for, when ``outages`` knows it

    def failed(self, state: RetryCallState) -> None:
        """tenacity's ``before_sleep``: a pass failed and will be retried."""
        if self.since is not None:
            return
        self.since = time.monotonic()
        self._counter.inc()
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("%s: %s; retrying with backoff until it recovers", self.name, _reason(exc))
        # The process's record of the outage (its condition, its metric, its decisions).
        self._store = classify(exc) if exc is not None else None
        if self._store is not None and exc is not None:
            OUTAGES.begin(self._store, exc)

    def passed(self) -> None:
        if self.since is not None:
            log.warning("%s recovered after %.1f s", self.name, time.monotonic() - self.since)
            self.since = None
        if self._store is not None:
            OUTAGES.end(self._store, recovered=True)
            self._store = None


def retrying(outage: Outage, *, initial_backoff_s: float = 0.1, max_backoff_s: float = 5.0) -> AsyncRetrying:
    """Retry forever on transient errors, with backoff; let anything else through."""
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=initial_backoff_s, jitter=initial_backoff_s, max=max_backoff_s),
        before_sleep=outage.failed,
        reraise=True,
    )


async def run_forever(
    name: str,
    one_pass: Pass,
    pause: Callable[[], Awaitable[object]],
    *,
    max_backoff_s: float = 5.0,
) -> None:
    """Run ``one_pass`` for ever, awaiting ``pause()`` after a pass that found nothing more
    to do; ride out transient errors (see the module docstring)."""
    outage = Outage(name)
    attempts = retrying(outage, max_backoff_s=max_backoff_s)
    while True:
        busy: bool = await attempts(one_pass)
        outage.passed()
        if not busy:
            await pause()


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "failed"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
