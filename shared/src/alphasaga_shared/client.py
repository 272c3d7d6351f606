"""What a client of AlphaSaga does over the wire: submit a request and follow its saga
on the public lifecycle stream. Used by the CLI and the tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from alphasaga_contracts import Service, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest

from .artifacts import ArtifactStore
from .wire import MalformedMessage, as_text, decode, encode, envelope_for

TERMINAL = (sg.SagaCompleted, sg.SagaRolledBack, sg.SagaCompensationFailed)


async def stream_tip(redis: Redis, stream: str) -> str:
    """The id of the newest entry (``0-0`` for an empty or missing stream)."""
    newest: Any = await redis.xrevrange(stream, count=1)
    return newest[0][0].decode() if newest else "0-0"


async def submit(
    redis: Redis, streams: Streams, request: ResearchRequest, saga_id: uuid.UUID | None = None
) -> uuid.UUID:
    saga_id = saga_id or uuid.uuid4()
    message = sg.StartResearch(saga_id=saga_id, request=request)
    env = envelope_for(message, correlation_id=str(saga_id))
    await redis.xadd(streams.commands(Service.ORCHESTRATOR), encode(env))  # type: ignore[arg-type]
    return saga_id


async def follow(
    redis: Redis,
    streams: Streams,
    saga_id: uuid.UUID,
    *,
    after: str = "0-0",
    timeout_s: float = 600,
    on_event: Callable[[sg.SagaEvent], None] | None = None,
) -> sg.SagaEvent:
    """Read the saga's lifecycle events until a terminal one; raise TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    cursor = after
    wanted = str(saga_id)
    while time.monotonic() < deadline:
        reply: Any = await redis.xread({streams.sagas: cursor}, count=500, block=500)
        for _, entries in reply:
            for entry_id, raw in entries:
                cursor = entry_id.decode()
                fields = as_text(raw)
                if fields.get("correlation_id") != wanted:
                    continue
                try:
                    event = decode(fields).message
                except MalformedMessage:
                    continue
                assert isinstance(event, sg.SagaEvent)
                if on_event is not None:
                    on_event(event)
                if isinstance(event, TERMINAL):
                    return event
    raise TimeoutError(f"saga {saga_id} did not finish within {timeout_s:.0f}s")


def _artifact_refs(outputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in outputs.items() if isinstance(v, dict) and {"sha256", "media_type"} <= v.keys()}


_EXTENSIONS = {"application/json": ".json", "image/png": ".png", "text/csv": ".csv", "text/x-python": ".py"}


async def write_results(dest: Path, outcome: sg.SagaEvent, artifacts: ArtifactStore | None = None) -> Path:
    """``dest/outcome.json`` plus any artifacts the last step referenced."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "outcome.json").write_text(json.dumps(outcome.model_dump(mode="json"), indent=2) + "\n")
    if artifacts is not None and isinstance(outcome, sg.SagaCompleted):
        for name, ref in _artifact_refs(outcome.outputs).items():
            ext = _EXTENSIONS.get(ref["media_type"], ".bin")
            (dest / f"{name}{ext}").write_bytes(await artifacts.get(ref["sha256"]))
    return dest
