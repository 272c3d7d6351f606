"""The bus: Redis Streams consumer groups with our guarantees on top (see
``redis_streams.py``), each batch through the middleware chain of ``chain.py``."""

from .chain import Batch, BatchHandler, BatchOutcome, Handler
from .redis_streams import Bus, DeadLetterNotice, HiredisPackingConnection, Subscription, ensure_group

__all__ = [
    "Batch",
    "BatchHandler",
    "BatchOutcome",
    "Bus",
    "DeadLetterNotice",
    "Handler",
    "HiredisPackingConnection",
    "Subscription",
    "ensure_group",
]
