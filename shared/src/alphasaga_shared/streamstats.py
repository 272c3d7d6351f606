"""The state of the streams a service reads, read from Redis on scrape (``XINFO GROUPS``,
``XPENDING``, ``XLEN`` of the dead-letter stream), never per message.

Every replica of a service reports the same groups: dashboards and alerts take the
``max`` by stream and group.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from . import metrics

Sample = tuple[tuple[str, ...], float]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StreamStats:
    """The last reading of one bus's groups; ``refresh`` takes a new one."""

    def __init__(self, client: Redis, groups: Sequence[tuple[str, str]], dead_letters: dict[str, str]) -> None:
        self.client = client
        self.groups = list(groups)  # (stream, group)
        self._wanted = set(self.groups)
        self.dead_letters = dead_letters  # stream -> its dead-letter stream
        self.reading: dict[str, list[Sample]] = {}

    async def refresh(self) -> None:
        streams = list(dict.fromkeys(s for s, _ in self.groups))
        async with self.client.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xinfo_groups(stream)
                pipe.xlen(stream)
                pipe.xlen(self.dead_letters[stream])
            for stream, group in self.groups:
                pipe.xpending_range(stream, group, min="-", max="+", count=1)
            replies = await pipe.execute(raise_on_error=False)
        reading: dict[str, list[Sample]] = {
            k: [] for k in ("lag", "pending", "oldest", "consumers", "length", "dead", "oldest_age")
        }
        for i, stream in enumerate(streams):
            self._read_stream(reading, stream, *replies[3 * i : 3 * i + 3])
        now_ms = time.time() * 1000
        for j, (stream, group) in enumerate(self.groups):
            oldest = replies[3 * len(streams) + j]
            if isinstance(oldest, Exception):
                continue
            idle_ms = float(oldest[0]["time_since_delivered"]) if oldest else 0.0
            age_ms = now_ms - int(_text(oldest[0]["message_id"]).split("-")[0]) if oldest else 0.0
            reading["oldest"].append(((stream, group), idle_ms / 1000))
            reading["oldest_age"].append(((stream, group), max(0.0, age_ms) / 1000))
        self.reading = reading

    def _read_stream(self, reading: dict[str, list[Sample]], stream: str, info: Any, length: Any, dead: Any) -> None:
        """A stream's length, its dead letters, and its wanted groups' lag, pending and
        consumers (each reply may be an error: that sample is left out)."""
        if not isinstance(length, Exception):
            reading["length"].append(((stream,), float(length)))
        if not isinstance(dead, Exception):
            reading["dead"].append(((stream,), float(dead)))
        if isinstance(info, Exception):
            return
        for g in info:
            labels = (stream, _text(g["name"]))
            if labels not in self._wanted:
                continue
            # ``lag`` is None when Redis cannot tell (after a deletion in the stream).
            if g.get("lag") is not None:
                reading["lag"].append((labels, float(g["lag"])))
            reading["pending"].append((labels, float(g["pending"])))
            reading["consumers"].append((labels, float(g["consumers"])))


class Watched(Collector):
    """Every bus of the process that reads streams (one in a service)."""

    def __init__(self) -> None:
        self.sources: list[StreamStats] = []

    async def refresh(self) -> None:
        for source in list(self.sources):
            await source.refresh()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        r: dict[str, list[Sample]] = {}
        for source in list(self.sources):
            for key, samples in source.reading.items():
                r.setdefault(key, []).extend(samples)
        by_group = ["stream", "group"]
        yield self._family("alphasaga_stream_lag", "Entries not yet delivered to the group", by_group, r.get("lag"))
        yield self._family(
            "alphasaga_stream_pending", "Entries delivered and not yet acknowledged", by_group, r.get("pending")
        )
        yield self._family(
            "alphasaga_stream_oldest_pending_idle_seconds",
            "Idle time of the group's oldest pending entry (0 when none): past the reclaim time it is stuck",
            by_group,
            r.get("oldest"),
        )
        yield self._family(
            "alphasaga_stream_oldest_pending_age_seconds",
            "Age (since it was written) of the group's oldest pending entry (0 when none)",
            by_group,
            r.get("oldest_age"),
        )
        yield self._family("alphasaga_stream_consumers", "Consumers in the group", by_group, r.get("consumers"))
        yield self._family("alphasaga_stream_length", "Entries in the stream", ["stream"], r.get("length"))
        yield self._family(
            "alphasaga_dead_letters", "Entries in the stream's dead-letter stream", ["stream"], r.get("dead")
        )

    @staticmethod
    def _family(name: str, doc: str, labels: list[str], samples: list[Sample] | None) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=labels)
        for values, value in samples or ():
            family.add_metric(list(values), value)
        return family


WATCHED = Watched()
REGISTRY.register(WATCHED)
metrics.on_scrape(WATCHED.refresh)
