"""What a service holds through an outage of a store, as ``alphasaga status`` shows it: the
board's key and its entries. Apart from ``outages`` (the riding out), so that a status
reads the board without loading the bus's retry and metrics machinery."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass


def held_key(namespace: str, saga: str) -> str:
    """Where the bus shows the messages of a saga held through an outage (a hash: one field
    per held entry, JSON ``Held``)."""
    return f"{namespace}:held:{saga}"


@dataclass(frozen=True, slots=True)
class Held:
    """A message a service holds through an outage, as ``alphasaga status`` shows it."""

    service: str
    consumer: str
    type: str
    step: str
    store: str  # its name for people: "PostgreSQL"
    since: float  # wall-clock seconds

    def describe(self, now: float | None = None) -> str:
        at = dt.datetime.fromtimestamp(self.since, dt.UTC).strftime("%H:%M:%S UTC")
        age = (time.time() if now is None else now) - self.since
        what = f"{self.step} ({self.type})" if self.step else self.type
        return f"{self.service} holds {what}: waiting for {self.store} since {at} ({age:.0f} s)"
