"""The log: ``replay`` (time travel through one saga) and ``events`` (the global log)."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import typer

from alphasaga_orchestrator.repository import SagaRepository, saga_stream
from alphasaga_shared.eventstore import START, EventStore, RecordedEvent
from alphasaga_shared.outbox import outbox_stream

from ..connect import event_store, load_settings
from ..errors import NOT_COMPLETED, CliError
from ..output import compact, echo, print_json
from ..sagas import event_name, resolve_saga
from ..timefmt import iso, parse_when
from ..timetravel import HIDDEN_DATA, ReplayError, frames, render, select
from .research import JsonFlag, SagaArg

CheckSaga = Callable[..., list[str]]


def invariant_checker() -> CheckSaga:
    """The orchestrator's checker, looked up when needed: the CLI must keep working with
    an orchestrator that does not ship one."""
    try:
        module = importlib.import_module("alphasaga_orchestrator.invariants")
        check: CheckSaga = module.check_saga
    except (ImportError, AttributeError):
        raise CliError(
            "this orchestrator has no invariant checker (alphasaga_orchestrator.invariants.check_saga)"
        ) from None
    return check


def check(
    repo: SagaRepository, saga_id: uuid.UUID, rows: list[RecordedEvent], outbox: list[RecordedEvent]
) -> list[str]:
    """Every violation the checker finds, folding the events again on the way."""
    checker = invariant_checker()
    try:
        return list(checker(saga_id, rows, outbox, fold=repo.fold))
    except Exception as exc:  # a checker that chokes on a broken history has found a problem
        return [f"the invariant checker failed on this history: {type(exc).__name__}: {exc}"]


def replay(
    saga: SagaArg,
    to: Annotated[int | None, typer.Option("--to", min=1, help="Stop after the N-th event")] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Stop at this time: ISO (UTC unless an offset) or an age: 10m")
    ] = None,
    diff: Annotated[bool, typer.Option("--diff", help="Show only what each event changed")] = False,
    check_: Annotated[
        bool, typer.Option("--check", help="Fold again and run the invariant checker; exit 1 on any violation")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Replay a saga's events one by one, each with the state after it.

    Time travel: --to N or --at TIME stops at a point, --diff shows only what each event
    changed, --check folds the events again and runs the invariant checker (exit 1 on a
    violation). Reads only the event store.

    Example: alphasaga replay 3f1c2a9e --to 3

    Example: alphasaga replay 3f1c2a9e --diff

    Example: alphasaga replay 3f1c2a9e --check
    """
    if check_ and (to is not None or at is not None):
        raise CliError("--check reads the whole history: leave out --to and --at")
    at_t = parse_when(at) if at else None
    settings = load_settings()

    async def load() -> tuple[SagaRepository, uuid.UUID, list[RecordedEvent], list[RecordedEvent]]:
        async with event_store(settings) as store:
            saga_id = await resolve_saga(store, saga)
            rows = await store.read_stream(saga_stream(saga_id))
            outbox = await store.read_stream(outbox_stream(str(saga_id))) if check_ else []
            # Folding needs only the repository's mapper, not the (then closed) store.
            return SagaRepository(store), saga_id, rows, outbox

    repo, saga_id, rows, outbox = asyncio.run(load())
    if check_:
        _print_check(repo, saga_id, rows, outbox, as_json)
        return
    chosen = select(rows, to=to, at=at_t)
    if to is not None and to > len(rows):
        echo(f"note: saga {saga_id} has {len(rows)} events, showing all of them", err=True)
    if not chosen:
        echo(f"note: no event of saga {saga_id} was recorded by {iso(at_t) if at_t else '?'}", err=True)
    replayed: list[dict[str, Any]] = []
    try:
        for frame in frames(saga_id, chosen, repo):
            if as_json:
                replayed.append(frame.as_json(diff=diff))
            else:
                for line in render(frame, diff_only=diff):
                    echo(line)
    except ReplayError as exc:
        raise CliError(f"{exc} (see `alphasaga replay {saga_id} --check`)", NOT_COMPLETED) from None
    if as_json:
        print_json({"saga_id": str(saga_id), "total_events": len(rows), "events": replayed})


def _print_check(
    repo: SagaRepository, saga_id: uuid.UUID, rows: list[RecordedEvent], outbox: list[RecordedEvent], as_json: bool
) -> None:
    violations = check(repo, saga_id, rows, outbox)
    if as_json:
        print_json(
            {
                "saga_id": str(saga_id),
                "events": len(rows),
                "outbox": len(outbox),
                "ok": not violations,
                "violations": violations,
            }
        )
    else:
        for v in violations:
            echo(f"violation: {v}")
    if violations:
        raise CliError(f"{len(violations)} invariant violation(s) in saga {saga_id}", NOT_COMPLETED)
    if not as_json:
        echo(f"ok: saga {saga_id}: {len(rows)} events and {len(outbox)} outgoing messages, no invariant violated")


# --- events ----------------------------------------------------------------------------


def event_json(row: RecordedEvent) -> dict[str, Any]:
    return {
        "position": row.global_position,
        "transaction_id": row.transaction_id,
        "stream_id": row.stream_id,
        "version": row.version,
        "event_id": str(row.event_id),
        "type": row.type,
        "recorded_at": iso(row.recorded_at),
        "data": row.data,
        "metadata": row.metadata,
    }


def event_line(row: RecordedEvent) -> str:
    if row.stream_id.startswith("saga-"):
        what = event_name(row.type)
        data = {k: v for k, v in row.data.items() if k not in HIDDEN_DATA}
    else:
        what = f"{row.type} -> {row.metadata.get('stream', '?')}"
        data = row.data
    return f"{row.global_position:>8} {iso(row.recorded_at)} {row.stream_id} v{row.version} {what} {compact(data, 160)}"


def matcher(
    saga_id: uuid.UUID | None, type_: str | None, since: dt.datetime | None, until: dt.datetime | None
) -> Callable[[RecordedEvent], bool]:
    streams = {saga_stream(saga_id), outbox_stream(str(saga_id))} if saga_id else None
    needle = type_.lower() if type_ else None

    def wanted(row: RecordedEvent) -> bool:
        return (
            (streams is None or row.stream_id in streams)
            and (needle is None or needle in row.type.lower())
            and (since is None or row.recorded_at >= since)
            and (until is None or row.recorded_at <= until)
        )

    return wanted


async def scan(
    store: EventStore,
    wanted: Callable[[RecordedEvent], bool],
    emit: Callable[[RecordedEvent], None],
    *,
    limit: int | None,
    follow: bool,
    batch: int = 1000,
    poll_s: float = 0.25,
) -> int:
    """Walk the log in commit order (never skipping a late commit); with ``follow``, keep
    waiting for new commits. Returns how many events were emitted."""
    position = START
    emitted = 0
    while True:
        rows = await store.read_all(position, limit=batch)
        for row in rows:
            position = row.position
            if wanted(row):
                emit(row)
                emitted += 1
                if limit is not None and emitted >= limit:
                    return emitted
        if len(rows) < batch:
            if not follow:
                return emitted
            await asyncio.sleep(poll_s)


def events(
    saga: Annotated[str | None, typer.Option(help="Only this saga's events and outgoing messages")] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="Only types containing this text, e.g. StepFailed")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Recorded since: ISO time or an age: 10m, 2h")] = None,
    until: Annotated[str | None, typer.Option(help="Recorded until: ISO time or an age")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many events")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events as they commit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Print the global event log, or follow it.

    Saga events and outgoing messages (the outbox), in commit order.

    Example: alphasaga events --type StepFailed --since 1d

    Example: alphasaga events --saga 3f1c2a9e --follow --json
    """
    since_t = parse_when(since) if since else None
    until_t = parse_when(until) if until else None
    settings = load_settings()

    def emit(row: RecordedEvent) -> None:
        if as_json:
            print_json(event_json(row))
        else:
            echo(event_line(row))

    async def go() -> None:
        async with event_store(settings) as store:
            saga_id = await resolve_saga(store, saga) if saga else None
            await scan(store, matcher(saga_id, type_, since_t, until_t), emit, limit=limit, follow=follow)

    asyncio.run(go())
