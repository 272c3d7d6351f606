"""What both transports build the same way: a subscription's chain, an outgoing entry and
a dead letter's fields. Only reading, committing and redelivering differ between them."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..config import Settings
from ..wire import Delivery, MalformedMessage, Outgoing, cap_text, encode, entry_size
from . import chain as ch

log = logging.getLogger("alphasaga_shared.bus")

# A stream entry: (logical stream name on the way out, or entry id when read; wire fields).
Entry = tuple[str, dict[str, str]]
# An entry read from a stream as a log: (stream, entry id, fields).
Read = tuple[str, str, dict[str, str]]


def encode_entry(settings: Settings, out: Outgoing) -> dict[str, str]:
    """The entry for ``out``; refused (``MalformedMessage``) when over the size limit."""
    fields = encode(out.envelope)
    size = entry_size(fields)
    if size > settings.max_entry_bytes:
        raise MalformedMessage(
            f"{out.envelope.type} of {size:,} bytes for {out.stream} is over the"
            f" {settings.max_entry_bytes:,}-byte limit: not published"
        )
    return fields


def dead_letter_fields(settings: Settings, group: str, d: Delivery) -> dict[str, str]:
    """The original fields as they were, and ours, prefixed so they cannot clash."""
    fields = dict(d.fields)
    error = cap_text(d.error or "unknown error", settings.max_error_chars, "dlq_error")
    fields.update(
        {
            "dlq_error": error.encode("ascii", "backslashreplace").decode(),
            "dlq_delivery_count": str(d.delivery_count),
            "dlq_source_stream": d.stream,
            "dlq_source_id": d.entry_id,
            "dlq_group": group,
            "dlq_consumer": settings.consumer,
            "dlq_at_ms": str(int(time.time() * 1000)),
        }
    )
    return fields


def subscription_chain(
    settings: Settings,
    *,
    stream: str,
    group: str,
    handler: ch.Handler,
    seen_before: ch.SeenBefore | None,
    in_flight: set[str],
    board: ch.HeldBoard,
    batch_handler: ch.BatchHandler | None,
    admit: ch.Refusal | None,
    traced: bool,
    deadline: ch.Deadline | None,
    on_outlasted: ch.OutlastedNotice | None,
    give_way: ch.DeliveryMiddleware | None = None,
) -> ch.NextBatch:
    """The chain every batch of a subscription goes through (docs/decisions/0009);
    ``give_way`` first, where a normal lane waits for its process's express lanes
    (``lanes.GiveWay``, docs/decisions/0023)."""

    def encode_out(out: Outgoing) -> dict[str, str]:
        return encode_entry(settings, out)

    middlewares: list[ch.BatchMiddleware] = [ch.SizeGuard(settings.max_entry_bytes), ch.decode_entries]
    if admit is not None:
        middlewares.append(ch.Admit(admit))
    if seen_before is not None:
        middlewares.append(ch.Dedupe(seen_before))
    middlewares.append(ch.InFlight(in_flight))
    if batch_handler is not None:
        middlewares.append(ch.BatchFirst(batch_handler, stream))
    return ch.chain(
        middlewares,
        [
            *([] if give_way is None else [give_way]),
            ch.ErrorPolicy(
                settings.delivery_cap,
                ch.OutagePolicy(deadline=deadline, outlasted=on_outlasted, board=board),
                encode_out,
            ),
            ch.Traced(traced=traced),
            ch.Timed(metrics.HANDLER_SECONDS.labels(stream, group)),
        ],
        handler,
        encode_out,
    )


# What to tell the sender of a message that was just dead-lettered (its dead letter's
# entry id given): a worker replies with the step's failure, so that the saga learns at
# once instead of at the step's timeout.
DeadLetterNotice = Callable[[Delivery, str], Sequence[Outgoing] | Awaitable[Sequence[Outgoing]]]


class Counters:
    """A subscription's message counters, bound once: label lookups cost more than the
    increments."""

    def __init__(self, stream: str, group: str) -> None:
        self.children: dict[str, Any] = {
            name: metrics.MESSAGES.labels(stream, group, name)
            for name in ("processed", "duplicate", "dead_lettered", "failed")
        }
        # Exported at 0 from the start, so that the first re-creation is an increase.
        metrics.GROUPS_RECREATED.labels(stream, group)

    def count(self, outcome: ch.BatchOutcome) -> None:
        for n, name in (
            (outcome.processed, "processed"),
            (outcome.duplicates, "duplicate"),
            (outcome.dead_lettered, "dead_lettered"),
            (outcome.failed, "failed"),
        ):
            if n:
                self.children[name].inc(n)


async def notify_dead(
    notice: DeadLetterNotice,
    stream: str,
    dead: Sequence[Delivery],
    dead_ids: Sequence[str],
    publish: Callable[[Sequence[Outgoing]], Awaitable[object]],
) -> None:
    """Tell whom a subscription names about its dead letters: what the notice returns is
    published; a notice may also record what it has to say itself (awaitable)."""
    try:
        notices: list[Outgoing] = []
        for d, entry_id in zip(dead, dead_ids, strict=True):
            found = notice(d, entry_id)
            notices.extend(await found if inspect.isawaitable(found) else found)
        await publish(notices)
    except Exception:  # a notice is a courtesy: the dead letter itself is safe
        log.exception("could not send the notices of %d dead letters of %s", len(dead), stream)


@dataclass(frozen=True, slots=True)
class GroupState:
    """A consumer group as its transport reports it: entries not yet delivered (None where
    the transport cannot tell), delivered and not yet acknowledged, and its readers."""

    lag: int | None
    pending: int
    consumers: int
