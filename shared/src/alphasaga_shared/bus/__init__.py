"""The bus: a port (``transport.py``) with two adapters, Redis Streams consumer groups
(``redis_streams.py``, the default) and NATS JetStream (``jetstream.py``), each batch
through the middleware chain of ``chain.py`` (docs/decisions/0009, 0021)."""

from .assembly import DeadLetterNotice
from .chain import Batch, BatchHandler, BatchOutcome, Handler
from .redis_streams import Bus, HiredisPackingConnection, Subscription, ensure_group
from .transport import BusPort, EntrySink, Forgetting, open_bus, transport_of

__all__ = [
    "Batch",
    "BatchHandler",
    "BatchOutcome",
    "Bus",
    "BusPort",
    "DeadLetterNotice",
    "EntrySink",
    "Forgetting",
    "Handler",
    "HiredisPackingConnection",
    "Subscription",
    "ensure_group",
    "open_bus",
    "transport_of",
]
