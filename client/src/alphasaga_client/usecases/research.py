"""Research as a principal: submit and cancel (the owner's rules), and the reads of sagas,
for viewers and up."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from alphasaga_contracts import Priority
from alphasaga_shared.errors import Forbidden, NotFound

from .caller import Caller, idempotent_message_id

if TYPE_CHECKING:
    from alphasaga_accounts import Principal
    from alphasaga_contracts.research import ResearchRequest
    from alphasaga_readmodel.summaries import SagaFilter, SagaSummary
    from alphasaga_shared.eventstore import ArtifactLink, Conn, RecordedEvent

    from ..commands import Submitted
    from ..messages import Entry
    from ..reads import Detail, Replay
    from ..rundiff import RunDiff
    from ..timetravel import Frame

# Called between the owner's row and the start's outbox row, inside their transaction: a
# test's fault injection (a crash there must leave neither).
FaultHook = Callable[[], Awaitable[None]]

# A saga submitted straight to Redis (the CLI, a redis-cli user) exists once the
# orchestrator has started it: a caller that asks right after waits this long for that.
JUST_SUBMITTED_S = 5.0
WAIT_LIMIT_S = 1800.0


async def submit_research(
    c: Caller,
    request: ResearchRequest,
    *,
    workflow: str = "research",
    idempotency_key: str | None = None,
    between_writes: FaultHook | None = None,
    workflow_version: int | None = None,
    priority: Priority = Priority.NORMAL,
) -> Submitted:
    """Submit as a principal. The saga's owner and its start (an outbox row the relay
    publishes) are written in one transaction: no saga without an owner, nothing accepted
    lost. The same ``idempotency_key`` from the same caller always names the same saga,
    recorded once. Only an admin names a file on the servers (``data_path``)."""
    c.require("researcher")
    if (refusal := data_path_refusal(c.principal, request)) is not None:
        raise Forbidden(refusal)
    message_id = None if idempotency_key is None else idempotent_message_id(c.principal, idempotency_key)

    async def record_owner(conn: Conn, saga_id: uuid.UUID) -> bool:
        recorded = await c.accounts.own(saga_id, c.principal, conn)
        if between_writes is not None:
            await between_writes()
        return recorded

    return await c.client.submit_recorded(
        request,
        record_owner,
        workflow=workflow,
        message_id=message_id,
        workflow_version=workflow_version,
        priority=priority,
    )


async def fork_saga(
    c: Caller, saga: str, from_step: str, changes: dict[str, Any], *, idempotency_key: str | None = None
) -> Submitted:
    """Fork as a principal: a researcher forks any saga it may read; the new saga is its
    own, recorded with its start as a submit's is. A fork keeps its source's request, so a
    request that names a file on the server is an admin's to fork."""
    c.require("researcher")
    message_id = None if idempotency_key is None else idempotent_message_id(c.principal, idempotency_key)
    message = await c.client.plan_fork(saga, from_step, changes, message_id=message_id)
    if (refusal := data_path_refusal(c.principal, message.request)) is not None:
        raise Forbidden(refusal)

    async def record_owner(conn: Conn, saga_id: uuid.UUID) -> bool:
        recorded: bool = await c.accounts.own(saga_id, c.principal, conn)
        return recorded

    return await c.client.start_recorded(message, record_owner, message_id=message_id)


def data_path_refusal(principal: Principal, request: ResearchRequest) -> str | None:
    """Why ``principal`` may not submit ``request``, if it may not. A ``data_path`` reads a
    file on the servers: only an admin, who also decides what lies in the data directory,
    names one; anyone else gives a built-in dataset. The answer names no path and no
    setting of the server."""
    if request.data_path is not None and not principal.may("admin"):
        return f"data_path names a file on the server: only an admin may give one (the caller has {principal.role})"
    return None


async def cancel_saga(c: Caller, saga: str, *, via: str) -> Submitted:
    """Cancel as a principal: a researcher its own sagas, an admin any. ``via`` says how
    the cancel came (it is the saga's recorded reason, with who asked)."""
    c.require("researcher")  # before the saga is looked up: a viewer learns nothing of it
    saga_id = await c.client.resolve(saga)
    if (refusal := await cancel_refusal(c, saga_id)) is not None:
        raise Forbidden(refusal)
    return await c.client.cancel(saga_id, reason=f"cancelled {via} by {c.subject}")


async def cancel_refusal(c: Caller, saga_id: uuid.UUID) -> str | None:
    """Why the caller may not cancel the saga, if it may not: the one rule, which a front
    end also asks to decide whether to offer a cancel at all."""
    if not c.principal.may("researcher"):
        return f"this needs the researcher role; the caller has {c.principal.role}"
    if not c.principal.may("admin") and await c.accounts.owner(saga_id) != c.subject:
        return "a researcher may cancel only the sagas it submitted"
    return None


async def saga_detail(c: Caller, saga: str) -> Detail:
    c.require("viewer")
    return await c.client.detail(saga)


async def list_sagas(c: Caller, where: SagaFilter) -> list[SagaSummary]:
    c.require("viewer")
    return await c.client.sagas(where)


async def state_counts(c: Caller) -> dict[str, int]:
    """How many sagas are in each state."""
    c.require("viewer")
    return await c.client.state_counts()


async def compare_sagas(c: Caller, a: str, b: str) -> RunDiff:
    """Two sagas side by side: where their logs part, and what differs step by step."""
    c.require("viewer")
    return await c.client.diff(a, b)


async def lifecycle(c: Caller, after: str | None = None) -> AsyncIterator[Entry]:
    """Every saga's public lifecycle events as the relay publishes them, from after entry
    ``after`` (None: from now on), read outside any consumer group."""
    c.require("viewer")
    stream = c.client.settings.streams.sagas
    cursors = {stream: after} if after else await c.client.cursors([stream])
    async for entry in c.client.tail(cursors):
        yield entry


async def saga_events(c: Caller, saga: str, *, after_version: int = 0) -> list[RecordedEvent]:
    c.require("viewer")
    return await c.client.events(saga, after_version=after_version)


async def state_at(
    c: Caller, saga: str, *, version: int | None = None, at: dt.datetime | None = None
) -> tuple[Replay, Frame]:
    """Time travel: the state after event ``version`` (or the last one recorded by ``at``),
    with the replay it ends."""
    c.require("viewer")
    replay = await c.client.replay(saga, to=version, at=at)
    if not replay.frames:
        raise NotFound(f"saga {replay.saga_id} had no event by then")
    if version is not None and version > replay.total_events:
        raise NotFound(f"saga {replay.saga_id} has {replay.total_events} events, not {version}")
    return replay, replay.frames[-1]


async def wait_for_saga(c: Caller, saga: str, *, timeout_s: float) -> tuple[SagaSummary, bool]:
    """The saga once it has ended, or as it is after ``timeout_s`` (at most half an hour);
    and whether it has ended."""
    c.require("viewer")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(max(timeout_s, 1.0), WAIT_LIMIT_S)
    while True:
        try:
            summary = await c.client.status(saga)
        except NotFound:
            if not _full_id(saga) or loop.time() > deadline:
                raise NotFound(f"no saga {saga}") from None
            await asyncio.sleep(0.2)
            continue
        if summary.terminal or loop.time() > deadline:
            return summary, summary.terminal
        await asyncio.sleep(0.5)


async def stream_of(c: Caller, saga: str) -> tuple[uuid.UUID, bool]:
    """The saga whose lifecycle a caller is about to follow, and whether it has ended; a
    full id that names no saga yet is waited for a moment (just submitted)."""
    c.require("viewer")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JUST_SUBMITTED_S
    while True:
        try:
            saga_id = await c.client.resolve(saga)
            break
        except NotFound:
            if not _full_id(saga) or loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)
    return saga_id, (await c.client.status(saga_id)).terminal


async def artifacts(c: Caller, saga: str) -> list[ArtifactLink]:
    c.require("viewer")
    return await c.client.artifacts(saga)


async def artifact(c: Caller, sha256: str) -> tuple[bytes, str]:
    """An artifact's content, checked against its hash, and its media type."""
    c.require("viewer")
    return await c.client.artifact(sha256), await c.client.artifact_media_type(sha256)


async def artifact_of_kind(c: Caller, saga: str, kind: str) -> bytes:
    """The saga's newest artifact of ``kind`` (its report, its chart)."""
    found = [a for a in await artifacts(c, saga) if a.ref.kind == kind]
    if not found:
        raise NotFound(f"saga {saga} has no {kind} (yet)")
    return await c.client.artifact(found[-1].ref.sha256)


def datasets(c: Caller) -> tuple[str, ...]:
    c.require("viewer")
    return c.client.datasets()


def _full_id(saga: str) -> bool:
    return len(saga) == 36
