"""The log: ``replay`` (time travel through one saga) and ``events`` (the global log)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import NOT_COMPLETED, CliError
from ..output import compact, echo, print_json, trace_link
from ..session import with_client
from ..timefmt import iso, parse_when
from .research import JsonFlag, SagaArg

if TYPE_CHECKING:
    from datetime import datetime

    from alphasaga_client import AlphaSaga, Check, Frame, Replay
    from alphasaga_shared.eventstore import RecordedEvent

# Bookkeeping of the eventsourcing library, already shown as the recorded time.
HIDDEN_DATA = frozenset({"timestamp", "originator_topic"})
_ABSENT_TEXT = "-"


def format_value(value: Any, absent: Any) -> str:
    return _ABSENT_TEXT if value is absent else json.dumps(value, default=str, ensure_ascii=False)


def render(frame: Frame, *, diff_only: bool) -> list[str]:
    """Lines for one event: a header, then the state after it (or only what changed)."""
    from alphasaga_client.timetravel import ABSENT

    data = " ".join(f"{k}={format_value(v, ABSENT)}" for k, v in frame.data.items() if k not in HIDDEN_DATA)
    lines = [f"#{frame.number} {iso(frame.row.recorded_at)} {frame.event} {data}".rstrip()]
    if diff_only:
        lines.extend(
            f"    {c.path}: {format_value(c.before, ABSENT)} -> {format_value(c.after, ABSENT)}" for c in frame.changes
        )
    else:
        lines.extend(f"    {key}: {format_value(value, ABSENT)}" for key, value in frame.state.items())
    return lines


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
    from_archive: Annotated[
        bool, typer.Option("--from-archive", help="Read the archived copy of the saga's events (alphasaga archive)")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Replay a saga's events one by one, each with the state after it.

    Time travel: --to N or --at TIME stops at a point, --diff shows only what each event
    changed, --check folds the events again and runs the invariant checker (exit 1 on a
    violation). Reads only the event store: an archived saga's events come from the archive,
    and --from-archive reads only there.

    Example: alphasaga replay 3f1c2a9e --to 3

    Example: alphasaga replay 3f1c2a9e --diff

    Example: alphasaga replay 3f1c2a9e --check

    Example: alphasaga replay 3f1c2a9e --from-archive --json
    """
    if check_ and (to is not None or at is not None):
        raise CliError("--check reads the whole history: leave out --to and --at")
    at_t = parse_when(at) if at else None
    if check_:

        async def checked(client: AlphaSaga) -> Check:
            return await client.check(saga)

        _print_check(with_client(checked), as_json)
        return

    _print_replay(_replayed(saga, to, at_t, from_archive), to, at_t, diff, as_json)


def _replayed(saga: str, to: int | None, at: datetime | None, from_archive: bool) -> Replay:
    async def replayed(client: AlphaSaga) -> Replay:
        return await client.replay(saga, to=to, at=at, from_archive=from_archive)

    try:
        return with_client(replayed)
    except Exception as exc:
        from alphasaga_client import Corrupt

        if isinstance(exc, Corrupt):
            raise CliError(f"{exc} (see `alphasaga replay {saga} --check`)", NOT_COMPLETED) from None
        raise


def _print_replay(result: Replay, to: int | None, at: datetime | None, diff: bool, as_json: bool) -> None:
    if to is not None and to > result.total_events:
        echo(f"note: saga {result.saga_id} has {result.total_events} events, showing all of them", err=True)
    if not result.frames:
        echo(f"note: no event of saga {result.saga_id} was recorded by {iso(at) if at else '?'}", err=True)
    traceparent = str(result.frames[0].state.get("traceparent") or "") if result.frames else ""
    trace = trace_link(result.saga_id, traceparent)
    if as_json:
        print_json(
            {
                "saga_id": str(result.saga_id),
                "trace_id": trace.split(" ")[0],
                "total_events": result.total_events,
                "events": [frame.as_json(diff=diff) for frame in result.frames],
            }
        )
        return
    for frame in result.frames:
        for line in render(frame, diff_only=diff):
            echo(line)
    echo(f"trace {trace}")


def _print_check(result: Check, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "saga_id": str(result.saga_id),
                "events": result.events,
                "outbox": result.outbox,
                "ok": not result.violations,
                "violations": result.violations,
            }
        )
    else:
        for v in result.violations:
            echo(f"violation: {v}")
    if result.violations:
        raise CliError(f"{len(result.violations)} invariant violation(s) in saga {result.saga_id}", NOT_COMPLETED)
    if not as_json:
        echo(
            f"ok: saga {result.saga_id}: {result.events} events and {result.outbox} outgoing messages,"
            " no invariant violated"
        )


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
    from alphasaga_client.timetravel import event_name, readable
    from alphasaga_saga.streams import saga_id_of_stream

    if saga_id_of_stream(row.stream_id) is not None:
        what = event_name(row.type)
        data = {k: v for k, v in readable(row.data).items() if k not in HIDDEN_DATA}
    else:
        what = f"{row.type} -> {row.metadata.get('stream', '?')}"
        data = row.data
    return f"{row.global_position:>8} {iso(row.recorded_at)} {row.stream_id} v{row.version} {what} {compact(data, 160)}"


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

    async def go(client: AlphaSaga) -> None:
        from alphasaga_client import LogFilter

        saga_id = await client.resolve(saga) if saga else None
        wanted = LogFilter(saga_id=saga_id, type_contains=type_, since=since_t, until=until_t)
        emitted = 0
        async for row in client.log(wanted, follow=follow):
            if as_json:
                print_json(event_json(row))
            else:
                echo(event_line(row))
            emitted += 1
            if limit is not None and emitted >= limit:
                return

    with_client(go)
