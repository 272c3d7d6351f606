"""The bus: a port (``transport.py``) with two adapters, Redis Streams consumer groups
(``redis_streams.py``, the default) and NATS JetStream (``jetstream.py``), each batch
through the middleware chain of ``chain.py`` (docs/decisions/0009, 0021).

Names load on first use: a client that only reads streams as logs (``redis_log.py``)
must not pay for the consumer side (faststream, seconds of imports)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assembly import DeadLetterNotice as DeadLetterNotice
    from .chain import Batch as Batch
    from .chain import BatchHandler as BatchHandler
    from .chain import BatchOutcome as BatchOutcome
    from .chain import Handler as Handler
    from .redis_streams import Bus as Bus
    from .redis_streams import HiredisPackingConnection as HiredisPackingConnection
    from .redis_streams import Subscription as Subscription
    from .redis_streams import ensure_group as ensure_group
    from .transport import BusPort as BusPort
    from .transport import EntrySink as EntrySink
    from .transport import Forgetting as Forgetting
    from .transport import LogPort as LogPort
    from .transport import open_bus as open_bus
    from .transport import transport_of as transport_of

_WHERE = {
    "DeadLetterNotice": "assembly",
    "Batch": "chain",
    "BatchHandler": "chain",
    "BatchOutcome": "chain",
    "Handler": "chain",
    "Bus": "redis_streams",
    "HiredisPackingConnection": "redis_streams",
    "Subscription": "redis_streams",
    "ensure_group": "redis_streams",
    "BusPort": "transport",
    "EntrySink": "transport",
    "Forgetting": "transport",
    "LogPort": "transport",
    "open_bus": "transport",
    "transport_of": "transport",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
