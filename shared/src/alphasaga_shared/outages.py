"""Outages of a store: which errors say that PostgreSQL or Redis cannot be reached
(``classify``), and what a process does about it (``OUTAGES.ride_out``).

An outage is not a failure of the work that met it. The bus's error policy
(``bus/chain.py``) asks ``classify`` about every error a handler raises; for an outage
it holds the message and calls again with backoff (a delivery it never gives back to
Redis counts no attempt) until the store is back or the message's own deadline passes.
While anything waits:

* one log line when the outage begins and one when it ends, and
  ``alphasaga_outage_seconds{store}`` says how long it has lasted;
* a condition (``conditions.py``) "waiting for PostgreSQL since …": the service is not
  ready, and past ``ALPHASAGA_OUTAGE_EXIT_S`` not live, and the runner exits with it.

Only errors that say the server is unreachable count: a refused, reset or closed
connection, a server starting, shutting down or out of connections, a timeout while
connecting. Anything else stays the handler's failure.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import Gauge
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from .conditions import CONDITIONS, Conditions

log = logging.getLogger(__name__)

POSTGRESQL = "postgresql"
REDIS = "redis"
NATS = "nats"
STORES = {POSTGRESQL: "PostgreSQL", REDIS: "Redis", NATS: "NATS"}

OUTAGE_SECONDS = Gauge(
    "alphasaga_outage_seconds",
    "How long the current outage of a store has lasted, as this process waits it out (0: none)",
    ["store"],
)

# asyncpg's errors that mean the server is gone, starting, stopping or full, by name:
# this module is imported by processes that never load asyncpg.
_PG_OUTAGES = (
    "PostgresConnectionError",  # SQLSTATE class 08: refused, lost, does not exist
    "CannotConnectNowError",  # starting up or shutting down
    "TooManyConnectionsError",
    "AdminShutdownError",  # a restart, pg_terminate_backend
    "CrashShutdownError",
)
# Frames whose presence in a traceback says which store a plain socket error came from.
_CONNECTING = {POSTGRESQL: ("asyncpg.",), REDIS: ("redis.",)}


def classify(exc: BaseException) -> str | None:
    """The store ``exc`` says is unreachable (``POSTGRESQL``, ``REDIS``), or None when it is
    not an outage."""
    store = _library_error(exc)
    if store is not None:
        return store
    if isinstance(exc, ConnectionError | TimeoutError):  # refused, reset, aborted; timeouts
        return _raised_in(exc, connecting=isinstance(exc, TimeoutError))
    return None


def _library_error(exc: BaseException) -> str | None:
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None:
        if isinstance(exc, tuple(getattr(asyncpg, name) for name in _PG_OUTAGES)):
            return POSTGRESQL
        if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
            return POSTGRESQL
    errors = sys.modules.get("redis.exceptions")
    if errors is not None:
        if isinstance(exc, errors.AuthenticationError | errors.AuthorizationError):
            return None  # a wrong password is no outage
        if isinstance(exc, errors.ConnectionError):  # BusyLoadingError is one
            return REDIS
        if isinstance(exc, errors.TimeoutError) and "connect" in str(exc).lower():
            return REDIS
    if is_nats_outage(exc):
        return NATS
    return None


# nats-py's errors that mean the server or JetStream cannot be reached, by name (a process
# on Redis never loads nats-py). Its own request timeout counts: a JetStream publish or API
# call unanswered while a stream's leader is elected again, or the server is away.
_NATS_OUTAGES = (
    "ConnectionClosedError",
    "NoServersError",
    "StaleConnectionError",
    "ConnectionReconnectingError",
    "OutboundBufferLimitError",
    "NoRespondersError",
    "TimeoutError",
)
_JETSTREAM_OUTAGES = ("NoStreamResponseError", "ServiceUnavailableError")


def is_nats_outage(exc: BaseException) -> bool:
    errors = sys.modules.get("nats.errors")
    if errors is not None and isinstance(exc, tuple(getattr(errors, name) for name in _NATS_OUTAGES)):
        return True
    js_errors = sys.modules.get("nats.js.errors")
    return js_errors is not None and isinstance(exc, tuple(getattr(js_errors, name) for name in _JETSTREAM_OUTAGES))


def _raised_in(exc: BaseException, *, connecting: bool) -> str | None:
    """The store whose client code the error passed through (a timeout only while
    connecting: a slow query or a handler's own timeout is not an outage)."""
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        name = tb.tb_frame.f_code.co_name
        for store, prefixes in _CONNECTING.items():
            if module.startswith(prefixes) and (not connecting or "connect" in f"{module}.{name}"):
                return store
        tb = tb.tb_next
    return None


@dataclass(slots=True)
class Span:
    """One outage as this process saw it (wall-clock seconds)."""

    store: str
    since: float
    reason: str
    until: float | None = None
    recovered: bool = False  # ended by the store answering (not by its last caller giving up)

    def describe(self) -> str:
        at = dt.datetime.fromtimestamp(self.since, dt.UTC).strftime("%H:%M:%S UTC")
        if self.until is None:
            return f"{STORES.get(self.store, self.store)} unreachable since {at}"
        return f"{STORES.get(self.store, self.store)} unreachable from {at} for {self.until - self.since:.0f} s"


class Outlasted(Exception):
    """An outage outlasted the deadline of the work waiting for it."""

    def __init__(self, span: Span, cause: BaseException) -> None:
        super().__init__(f"{span.describe()}, past the deadline: {type(cause).__name__}: {cause}")
        self.span = span


T = TypeVar("T")
Hook = Callable[[str, Span], Awaitable[None]]  # (store, span): shows the held work elsewhere


class Outages:
    """The outages this process is waiting out, by store: open while anything waits."""

    def __init__(self, conditions: Conditions = CONDITIONS, *, initial_backoff_s: float = 0.1) -> None:
        self.conditions = conditions
        self.exit_after_s: float | None = None  # ALPHASAGA_OUTAGE_EXIT_S, set by the runner
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = 2.0
        self._waiting: dict[str, int] = {}
        self._open: dict[str, Span] = {}
        self._recent: deque[Span] = deque(maxlen=32)

    def seconds(self, store: str) -> float:
        span = self._open.get(store)
        return 0.0 if span is None else time.time() - span.since

    def current(self) -> dict[str, Span]:
        return dict(self._open)

    def recent(self) -> list[Span]:
        """Outages open now or ended lately, oldest first (for the decisions they explain)."""
        return list(self._recent)

    def begin(self, store: str, exc: BaseException) -> Span:
        """One more caller waits for ``store``; the first opens the outage. Each ``begin`` is
        matched by one ``end``: the outage is over when the last caller stops waiting."""
        self._waiting[store] = self._waiting.get(store, 0) + 1
        span = self._open.get(store)
        if span is not None:
            return span
        last = next((s for s in reversed(self._recent) if s.store == store), None)
        if last is not None and not last.recovered:  # no one saw it come back: the same outage
            span, span.until = last, None
            log.info("%s: waiting for it again (%s)", span.describe(), f"{type(exc).__name__}: {exc}")
        else:
            span = Span(store, time.time(), f"{type(exc).__name__}: {exc}".strip(": "))
            self._recent.append(span)
            log.warning("%s: waiting for it, holding the work that needs it (%s)", span.describe(), span.reason)
        self._open[store] = span
        at = dt.datetime.fromtimestamp(span.since, dt.UTC).strftime("%H:%M:%S UTC")
        name = STORES.get(store, store)
        self.conditions.begin(f"outage:{store}", f"waiting for {name} since {at}", bound_s=self.exit_after_s)
        return span

    def end(self, store: str, *, recovered: bool) -> None:
        """A caller stops waiting for ``store`` (it answered, or the caller gave up)."""
        left = self._waiting.get(store, 0) - 1
        if left > 0:  # another still waits: what answered this caller may not have been the store
            self._waiting[store] = left
            return
        self._waiting.pop(store, None)
        span = self._open.pop(store, None)
        if span is None:
            return
        span.until, span.recovered = time.time(), recovered
        self.conditions.end(f"outage:{store}")
        verb = "back" if recovered else "no longer waited for"
        log.warning("%s %s after %.1f s", STORES.get(store, store), verb, span.until - span.since)

    async def ride_out(
        self, call: Callable[[], Awaitable[T]], *, deadline: float | None = None, hook: Hook | None = None
    ) -> T:
        """``call()`` until it returns; through outages with backoff, until ``deadline``
        (wall-clock seconds) when one is given, then ``Outlasted``. Any other error is
        raised at once. ``hook`` is awaited each time a call failed on an outage."""
        # The common case first, without the retry machinery (it costs more than a handler);
        # a failure on an outage is then fed to it as its first attempt's.
        first_failure: list[BaseException] = []
        try:
            return await call()
        except Exception as exc:
            if classify(exc) is None:
                raise
            first_failure.append(exc)
        waiting: list[Span] = []

        async def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            assert exc is not None
            store = classify(exc)
            assert store is not None
            if not waiting:  # its first failure: it waits from now on, until it returns
                waiting.append(self.begin(store, exc))
            span = waiting[0]
            if deadline is not None and time.time() >= deadline:
                raise Outlasted(span, exc) from exc
            if hook is not None:
                await hook(store, span)

        attempts = AsyncRetrying(
            retry=retry_if_exception(lambda e: classify(e) is not None),
            wait=wait_exponential_jitter(
                multiplier=self.initial_backoff_s, jitter=self.initial_backoff_s, max=self.max_backoff_s
            ),
            before_sleep=before_sleep,
            reraise=True,
        )

        async def once() -> T:  # tenacity awaits only what it sees is a coroutine function
            if first_failure:
                raise first_failure.pop()
            return await call()

        try:
            result: T = await attempts(once)
        except BaseException:
            if waiting:
                self.end(waiting[0].store, recovered=False)
            raise
        if waiting:
            self.end(waiting[0].store, recovered=True)
        return result


OUTAGES = Outages()
for _store in STORES:  # read at each scrape
    OUTAGE_SECONDS.labels(_store).set_function(functools.partial(OUTAGES.seconds, _store))
