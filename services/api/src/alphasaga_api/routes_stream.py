"""``GET /v1/sagas/{id}/stream``: the saga's public lifecycle events as Server-Sent Events.
Each event's id is its entry id on the lifecycle stream, so that a client that reconnects
with ``Last-Event-ID`` gets exactly the events after it: none lost, none twice."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from alphasaga_client import AlphaSaga, Lifecycle
from alphasaga_client.usecases import research

from .routes_research import SagaId
from .security import Acting, authorize, role, runtime

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
ENTRY_ID = r"^\d{1,20}-\d{1,20}$"
# A client that finds the saga already ended past its Last-Event-ID is told so this soon.
ENDED_GRACE_S = 1.0
# A comment line this often while nothing happens keeps intermediaries from closing the stream.
HEARTBEAT_S = 15.0


def frame(item: Lifecycle) -> str:
    body = item.event.model_dump(mode="json")
    return f"id: {item.entry_id}\nevent: {item.event.TYPE}\ndata: {json.dumps(body)}\n\n"


@router.get(
    "/sagas/{saga_id}/stream",
    openapi_extra=role("viewer"),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The saga's lifecycle events"}},
)
async def stream(
    request: Request,
    who: Acting,
    saga_id: SagaId,
    last_event_id: Annotated[str | None, Header(pattern=ENTRY_ID)] = None,
) -> StreamingResponse:
    """The saga's lifecycle events live, from its start or after ``Last-Event-ID``, until it ends."""
    rt = runtime(request)
    resolved, ended = await research.stream_of(who, saga_id)  # a 404 before the stream starts
    timeout = ENDED_GRACE_S if ended and last_event_id else rt.api.stream_timeout_s
    return StreamingResponse(
        _events(rt.client, resolved, last_event_id or "0-0", timeout, ended=ended),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(
    client: AlphaSaga, saga_id: uuid.UUID, after: str, timeout_s: float, *, ended: bool
) -> AsyncIterator[str]:
    async def frames() -> AsyncIterator[str]:
        try:
            async for item in client.follow(saga_id, after=after, timeout_s=timeout_s):
                yield frame(item)
        except TimeoutError:
            # A saga that had ended has nothing more: the stream just ends. A running one
            # outlived the stream's time: say so, and the client resumes with Last-Event-ID.
            if not ended:
                yield "event: timeout\ndata: {}\n\n"

    async for text in with_heartbeat(frames(), f"saga {saga_id}"):
        yield text


async def with_heartbeat(frames: AsyncIterator[str], what: str) -> AsyncIterator[str]:
    """``frames`` as an SSE body: a first comment at once, then each frame, and a comment
    whenever nothing came for a while. ``frames`` runs in a task of its own, so that a
    quiet wait is never cancelled halfway through one of its reads."""
    yield ": following\n\n"  # the headers and a first byte at once: the client knows it is connected
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in frames:
                await queue.put(item)
        finally:
            await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT_S):  # not wait_for: it can swallow a cancel (3.11)
                    item = await queue.get()
            except TimeoutError:
                yield ": keepalive\n\n"  # a long step sends nothing: proxies must not take the stream for dead
                continue
            if item is None:
                break
            yield item
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the stream has ended; say why in the log, not to the client
            log.warning("stream of %s ended by %s", what, type(exc).__name__)
