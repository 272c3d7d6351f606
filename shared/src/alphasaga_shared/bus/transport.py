"""The bus as a port: what services, the relay and the runner may ask of it, whichever
transport carries the messages (docs/decisions/0021).

Two adapters implement it: ``redis_streams.Bus`` (Redis Streams consumer groups, the
default) and ``jetstream.JetStreamBus`` (NATS JetStream durable pull consumers), chosen by
``ALPHASAGA_BROKER_URL``'s scheme in ``open_bus``. Both run every batch through the same
middleware chain (``chain.py``), so what a message goes through (size guard, decoder,
admission, idempotency guard, error policy with its delivery cap, tracing, timing) is one
code path; only reading, committing and redelivering differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..config import JETSTREAM_SCHEMES, REDIS_SCHEMES, ConfigError, Settings
from ..wire import Outgoing
from . import chain as ch
from .assembly import Entry, GroupState
from .lanes import LaneGate


class Forgetting(Protocol):
    """Whether the transport forgot what was published (``sentinel.py``)."""

    async def forgotten(self) -> str | None: ...

    async def begin(self) -> None: ...

    async def done(self) -> bool: ...


class EntrySink(Protocol):
    """What the outbox relay needs: publish already-encoded entries, and learn when the
    transport forgot them."""

    async def publish_entries(self, entries: Sequence[Entry]) -> list[str]: ...

    def forgetting(self, namespace: str) -> Forgetting: ...


class StreamLog(Protocol):
    """Streams read as logs, for operators and tests (``alphasaga tail``, ``dlq``): entry
    ids are Redis's ``<ms>-<n>`` or JetStream's stream sequence, ordered either way."""

    async def entries(self, stream: str, *, after: str | None = None, count: int = 1000) -> list[Entry]: ...

    async def tip(self, stream: str) -> str: ...

    async def delete_entries(self, stream: str, entry_ids: Sequence[str]) -> int: ...

    async def redrive(self, dlq_stream: str, entry_id: str, original: dict[str, str]) -> str: ...

    async def dead_letter_streams(self, namespace: str) -> list[str]: ...

    async def read(
        self, cursors: dict[str, str], *, count: int, block_ms: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """(stream, entry id, fields) after each stream's cursor, waiting up to ``block_ms``
        for the first; outside any group (it takes nothing from a service)."""
        ...

    async def held(self, namespace: str, saga: str) -> list[str]:
        """The held-message board's entries for a saga (JSON of ``outages.Held``)."""
        ...

    async def has_group(self, stream: str, group: str) -> bool: ...

    async def group_state(self, stream: str, group: str) -> GroupState | None:
        """The group on ``stream``; None when it does not exist (yet)."""
        ...


class LogPort(EntrySink, StreamLog, Protocol):
    """What a client needs of the transport: publish, read streams as logs, ping."""

    async def ping(self) -> None: ...


class BusPort(LogPort, Protocol):
    """The bus a service is given (``runner.ServiceContext.bus``)."""

    service: str
    settings: Settings
    lanes: LaneGate  # the express lanes' gate in this process (decisions/0023)

    async def publish(self, outgoing: Sequence[Outgoing]) -> list[str]: ...

    def subscribe(
        self,
        stream: str,
        handler: ch.Handler,
        *,
        group: str | None = None,
        dedupe: bool = False,
        max_records: int | None = None,
        batch_handler: ch.BatchHandler | None = None,
        on_dead_letter: Any = None,
        traced: bool = True,
        deadline: ch.Deadline | None = None,
        on_outlasted: ch.OutlastedNotice | None = None,
        admit: ch.Refusal | None = None,
    ) -> Any: ...

    def watch(self, stream: str, group: str) -> None: ...

    async def connect(self) -> Any: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check_groups(self) -> None: ...


def transport_of(url: str) -> str:
    """``"jetstream"`` or ``"redis"`` for a broker URL; a ConfigError for anything else."""
    scheme = url.partition("://")[0].lower()
    if scheme in JETSTREAM_SCHEMES:
        return "jetstream"
    if scheme in REDIS_SCHEMES:
        return "redis"
    raise ConfigError(f"ALPHASAGA_BROKER_URL: unknown scheme {scheme!r} (nats:// for JetStream, redis:// for Redis)")


def open_bus(settings: Settings, *, service: str, url: str | None = None) -> BusPort:
    """The bus for ``url`` (default: ``settings.bus_url``), not yet connected."""
    url = url or settings.bus_url
    if not url:
        raise ConfigError("no transport: set ALPHASAGA_BROKER_URL (nats://…) or ALPHASAGA_REDIS_URL")
    if transport_of(url) == "jetstream":
        from .jetstream import JetStreamBus

        return JetStreamBus(settings, service=service, url=url)
    from .redis_streams import Bus

    return Bus(settings, service=service, redis_url=url)
