"""Following what happens: a saga's lifecycle events as the relay publishes them, its own
events as they commit, and any stream tailed outside the consumer groups."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alphasaga_contracts import SubmissionState
from alphasaga_readmodel.summaries import submission_summary
from alphasaga_shared.errors import Corrupt, InvalidRequest

from .core import UNRECORDED, Core

if TYPE_CHECKING:
    from alphasaga_contracts import saga as sg
    from alphasaga_readmodel.store import ReadStore

    from .messages import Entry
    from .timetravel import Frame


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A public lifecycle event of a saga, with its entry id on the lifecycle stream (a
    cursor to resume from)."""

    entry_id: str
    event: sg.SagaEvent


class Streams(Core):
    async def follow(
        self, saga: str | uuid.UUID, *, after: str = "0-0", timeout_s: float | None = None
    ) -> AsyncIterator[Lifecycle]:
        """The saga's public lifecycle events as the relay publishes them (the stream
        ``<namespace>:evt:sagas``), from after the entry id ``after`` until the one that
        ends the saga. ``Submitted.follow_from`` is the place to start for a saga just
        submitted; an entry id already seen resumes. Raises ``TimeoutError`` after
        ``timeout_s`` without the end."""
        from alphasaga_contracts import saga as sg
        from alphasaga_contracts.envelope import CORRELATION_ID
        from alphasaga_shared.wire import MalformedMessage, decode

        saga_id = saga if isinstance(saga, uuid.UUID) else await self.resolve(saga)
        log = await self.transport()
        stream, wanted, cursor = self.settings.streams.sagas, str(saga_id), after
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            for _, entry_id, fields in await log.read({stream: cursor}, count=500, block_ms=500):
                cursor = entry_id
                if fields.get(CORRELATION_ID) != wanted:
                    continue
                try:
                    event = decode(fields).message
                except MalformedMessage:
                    continue  # not ours to judge here: the stream has one writer, the relay
                assert isinstance(event, sg.SagaEvent)
                yield Lifecycle(cursor, event)
                if event.is_terminal():
                    return
        raise TimeoutError(f"saga {saga_id} did not finish within {timeout_s:.0f}s")

    async def watch(
        self, saga: str | uuid.UUID, *, timeout_s: float | None = None, poll_s: float = 0.2
    ) -> AsyncIterator[Frame]:
        """The saga's own events as they commit, each with the state after it, until it
        ends. Raises ``TimeoutError`` after ``timeout_s`` without the end."""
        from .timetravel import Frame

        saga_id = saga if isinstance(saga, uuid.UUID) else await self.resolve(saga)
        store = await self.saga_store()
        mapper = (await self.reader()).mapper
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        folded: Any = None
        number, previous = 0, dict[str, Any]()
        while True:
            if number == 0:
                await _raise_if_rejected(store, saga_id)
            for row in await store.events_of(saga_id, after_version=number):
                number += 1
                try:
                    folded = mapper.to_domain_event(saga_id, row).mutate(folded)
                except Exception as exc:
                    raise Corrupt(f"event {row.version} of saga {saga_id} cannot be folded: {exc}") from None
                frame = Frame.after(number, row, folded, previous)
                previous = frame.state
                yield frame
                if folded is not None and folded.terminal:
                    return
            if deadline is not None and time.monotonic() > deadline:
                if number == 0 and not await store.known(saga_id):
                    raise TimeoutError(f"saga {saga_id} is unknown after {timeout_s:.0f}s: {UNRECORDED}")
                raise TimeoutError(f"saga {saga_id} is still {previous.get('state', 'PENDING')} after {timeout_s:.0f}s")
            await asyncio.sleep(poll_s)

    async def cursors(self, streams: Sequence[str], start: str = "$") -> dict[str, str]:
        """Where to start tailing each stream: ``$`` for entries added from now on, ``0``
        for all, or an entry id. Stream names may be short (``cmd:reasoning``)."""
        from .messages import resolve_stream

        names = [resolve_stream(s, self.settings.streams) for s in streams]
        if start != "$":
            return dict.fromkeys(names, start)
        # "$" itself, re-read on every call, would miss entries added between two reads:
        # start from each stream's newest id instead.
        log = await self.transport()
        return {n: await log.tip(n) for n in names}

    async def tail(self, cursors: dict[str, str], *, count: int = 100) -> AsyncIterator[Entry]:
        """Entries after ``cursors`` (see ``cursors``) as they arrive, decoded, read outside
        any consumer group: it never takes a message from a service."""
        from .messages import decode_entry

        log = await self.transport()
        cursors = dict(cursors)
        while True:
            for stream, entry_id, fields in await log.read(cursors, count=count, block_ms=1000):
                cursors[stream] = entry_id
                yield decode_entry(stream, entry_id, fields)


async def _raise_if_rejected(store: ReadStore, saga_id: uuid.UUID) -> None:
    found = submission_summary(saga_id, await store.outbox_of(saga_id))
    if found is not None and found.state == SubmissionState.REJECTED:
        raise InvalidRequest(f"refused by the orchestrator: {found.failure or '?'}")
