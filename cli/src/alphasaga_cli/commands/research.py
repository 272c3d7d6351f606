"""What a researcher does: submit, watch, status, list, cancel, artifacts."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import typing
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alphasaga_contracts import Service
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import Objective
from alphasaga_orchestrator.projection import SagaProjector, SagaSummary, list_summaries, load_summary
from alphasaga_orchestrator.repository import SagaRepository, saga_stream
from alphasaga_shared.artifacts import ArtifactStore
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore
from alphasaga_shared.wire import encode, envelope_for

from ..connect import event_store, load_settings, redis_client
from ..errors import NOT_COMPLETED, OK, CliError
from ..output import console, echo, print_json, table, verdict_line
from ..requests import load_request
from ..sagas import Progress, follow_saga, resolve_saga, workflows_for
from ..timefmt import iso, parse_when, seconds

SAGA_STATES = typing.get_args(sg.SagaState)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
SagaArg = Annotated[str, typer.Argument(help="Saga id, or a unique prefix of it", show_default=False)]


# --- the progress view -----------------------------------------------------------------


def _progress_view(progress: Progress) -> Group:
    now = dt.datetime.now(dt.UTC)
    t = Table(box=None)
    for name in ("step", "state", "attempt", "elapsed"):
        t.add_column(name)
    for line in progress.steps.values():
        elapsed = line.elapsed(now)
        t.add_row(line.name, line.status, str(line.attempt or ""), seconds(elapsed) if elapsed is not None else "")
    return Group(Text(f"saga {progress.saga_id}  {progress.state}", style="bold"), t)


def final_line(progress: Progress) -> str:
    out = progress.outcome()
    took = f" in {seconds(out['elapsed_s'])}" if out["elapsed_s"] is not None else ""
    if progress.state == "COMPLETED":
        return f"COMPLETED{took}: {verdict_line(out['verdict'], out['metrics'])}"
    return f"{progress.state}{took}: {out['failure'] or 'no reason recorded'}"


async def watch_until_end(
    store: EventStore, settings: Settings, saga_id: uuid.UUID, *, timeout: float, as_json: bool
) -> Progress:
    """A live table on a terminal; otherwise a line per step change (on stderr with --json)."""
    progress = Progress(saga_id, SagaRepository(store), workflows_for(settings))
    out = console()
    if out.is_terminal and not as_json:
        with Live(_progress_view(progress), console=out, auto_refresh=False) as live:

            def redraw(_: list[str] | None = None) -> None:
                live.update(_progress_view(progress), refresh=True)

            await follow_saga(store, progress, timeout_s=timeout, on_lines=redraw, on_tick=redraw)
            redraw()
    else:

        def print_lines(lines: list[str]) -> None:
            for line in lines:
                echo(f"  {line}", err=as_json)

        await follow_saga(store, progress, timeout_s=timeout, on_lines=print_lines)
    if as_json:
        print_json(progress.outcome())
    else:
        echo(final_line(progress))
    return progress


# --- submit ----------------------------------------------------------------------------


def submit(
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="The request as JSON or YAML (- reads stdin)")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Built-in dataset (default sp500)")] = None,
    data_path: Annotated[str | None, typer.Option(help="Your own CSV or Parquet file instead of a dataset")] = None,
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD")] = None,
    objective: Annotated[str | None, typer.Option(help=f"{', '.join(typing.get_args(Objective))}")] = None,
    max_drawdown: Annotated[float | None, typer.Option(help="Largest acceptable drawdown, 0-1")] = None,
    min_sharpe: Annotated[float | None, typer.Option(help="Smallest acceptable Sharpe ratio")] = None,
    commission_bps: Annotated[float | None, typer.Option(help="Commission per trade, basis points")] = None,
    slippage_bps: Annotated[float | None, typer.Option(help="Slippage per trade, basis points")] = None,
    trials: Annotated[int | None, typer.Option(help="Strategies tried so far (deflated Sharpe)")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    workflow: Annotated[str | None, typer.Option(help="Workflow name (default research)")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the saga ends; exit 0 if it completed")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Submit a research request and print its saga id.

    The request (flags, or a JSON/YAML file with flags on top) is checked against its
    contract first: an invalid one is refused and nothing is published. With --wait, a
    live view shows each step until the saga ends; exit code 0 means it completed.

    Example: alphasaga submit --dataset sp500 --start 2010-01-01 --wait

    Example: alphasaga submit -f request.yaml --min-sharpe 0.5 --json
    """
    overrides = {
        "dataset": dataset,
        "data_path": data_path,
        "start": start,
        "end": end,
        "objective": objective,
        "max_drawdown": max_drawdown,
        "min_sharpe": min_sharpe,
        "commission_bps": commission_bps,
        "slippage_bps": slippage_bps,
        "trials": trials,
        "seed": seed,
    }
    request, file_workflow = load_request(file, overrides)
    message = sg.StartResearch(saga_id=uuid.uuid4(), workflow=workflow or file_workflow or "research", request=request)
    settings = load_settings()

    async def go() -> int:
        async with AsyncExitStack() as stack:
            redis = await stack.enter_async_context(redis_client(settings))
            # Connected before publishing: a saga is never submitted that we then cannot watch.
            store = await stack.enter_async_context(event_store(settings)) if wait else None
            saga_id = message.saga_id
            assert saga_id is not None
            env = envelope_for(message, correlation_id=str(saga_id))
            await redis.xadd(settings.streams.commands(Service.ORCHESTRATOR), encode(env))  # type: ignore[arg-type]
            if store is None:
                if as_json:
                    print_json({"saga_id": str(saga_id), "message_id": env.message_id})
                else:
                    echo(str(saga_id))
                return OK
            echo(f"saga {saga_id} submitted", err=as_json)
            progress = await watch_until_end(store, settings, saga_id, timeout=timeout, as_json=as_json)
            return OK if progress.state == "COMPLETED" else NOT_COMPLETED

    raise typer.Exit(asyncio.run(go()))


def watch(
    saga: SagaArg,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Follow a saga until it ends, then print its verdict.

    One line per step with its state, attempt and elapsed time. Exit code 0 if the saga
    completed, 1 if not.

    Example: alphasaga watch 3f1c2a9e
    """
    settings = load_settings()

    async def go() -> int:
        async with event_store(settings) as store:
            saga_id = await resolve_saga(store, saga)
            progress = await watch_until_end(store, settings, saga_id, timeout=timeout, as_json=as_json)
            return OK if progress.state == "COMPLETED" else NOT_COMPLETED

    raise typer.Exit(asyncio.run(go()))


# --- status and list -------------------------------------------------------------------


async def current_summary(store: EventStore, saga_id: uuid.UUID) -> SagaSummary:
    """The saga's row of the projection, caught up with the log first; refolded from its
    stream if a transaction still open elsewhere holds the log reader behind it."""
    projector = SagaProjector(store)
    await projector.catch_up()
    summary = await load_summary(store, saga_id)
    async with store.pool.acquire() as conn:
        latest = await conn.fetchval("SELECT max(version) FROM events WHERE stream_id = $1", saga_stream(saga_id))
    if summary is None or summary.version < (latest or 0):
        try:
            summary = await projector.refresh(saga_id)
        except Exception as exc:
            raise CliError(
                f"saga {saga_id} cannot be folded from its events: {exc} (see `alphasaga replay {saga_id} --check`)"
            ) from None
    if summary is None:
        raise CliError(f"no saga {saga_id}")
    return summary


def status(saga: SagaArg, as_json: JsonFlag = False) -> None:
    """Show a saga's current state.

    Read from the saga_summaries projection, caught up with the event log first.

    Example: alphasaga status 3f1c2a9e --json
    """
    settings = load_settings()

    async def go() -> SagaSummary:
        async with event_store(settings) as store:
            return await current_summary(store, await resolve_saga(store, saga))

    summary = asyncio.run(go())
    if as_json:
        print_json(summary.as_json())
        return
    rows = [
        ["saga", str(summary.saga_id)],
        ["state", summary.state],
        ["workflow", f"{summary.workflow} v{summary.workflow_version}"],
        ["step", f"{summary.current_step} (attempt {summary.attempt})" if summary.current_step else "-"],
        ["completed", ", ".join(summary.steps_completed) or "-"],
        ["started", iso(summary.started_at)],
        [
            "updated",
            f"{iso(summary.updated_at)} ({seconds((summary.updated_at - summary.started_at).total_seconds())})",
        ],
        ["events", str(summary.version)],
    ]
    if summary.failure:
        rows.append(["failure", summary.failure])
    if summary.verdict or summary.metrics:
        rows.append(["verdict", verdict_line(summary.verdict, summary.metrics)])
    table(["", ""], rows)


def list_sagas(
    state: Annotated[str | None, typer.Option(help=f"Only sagas in this state: {', '.join(SAGA_STATES)}")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only sagas started since: ISO time (UTC unless an offset) or an age: 2h, 3d")
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many, newest first (0: all)")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List sagas, newest first.

    Read from the saga_summaries projection, caught up with the event log first.

    Example: alphasaga list --state ROLLED_BACK --since 1d
    """
    wanted = state.upper() if state else None
    if wanted is not None and wanted not in SAGA_STATES:
        raise CliError(f"unknown state {state!r}: one of {', '.join(SAGA_STATES)}")
    since_t = parse_when(since) if since else None
    settings = load_settings()

    async def go() -> list[SagaSummary]:
        async with event_store(settings) as store:
            await SagaProjector(store).catch_up()
            return await list_summaries(store, state=wanted, since=since_t, limit=limit or None)

    summaries = asyncio.run(go())
    if as_json:
        print_json([s.as_json(with_state=False) for s in summaries])
        return
    if not summaries:
        echo("no sagas", err=True)
        return
    table(
        ["saga", "state", "workflow", "step", "started", "updated", "outcome"],
        [
            [
                str(s.saga_id),
                s.state,
                f"{s.workflow} v{s.workflow_version}",
                s.current_step or "-",
                iso(s.started_at),
                iso(s.updated_at),
                s.failure if s.failure else (verdict_line(s.verdict, None) if s.verdict else ""),
            ]
            for s in summaries
        ],
    )


# --- cancel ----------------------------------------------------------------------------


def cancel(
    saga: SagaArg,
    reason: Annotated[str, typer.Option(help="Why, recorded in the saga")] = "cancelled by user",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the saga until it ends; exit 0 if rolled back")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 300,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a running saga.

    The orchestrator compensates the steps done so far, newest first, and the saga ends
    ROLLED_BACK.

    Example: alphasaga cancel 3f1c2a9e --reason "wrong dates" --wait
    """
    settings = load_settings()

    async def go() -> int:
        async with event_store(settings) as store, redis_client(settings) as redis:
            saga_id = await resolve_saga(store, saga)
            current = await SagaRepository(store).load(saga_id)
            if current is not None and current.terminal:
                raise CliError(f"saga {saga_id} already ended {current.state}: nothing to cancel")
            env = envelope_for(sg.CancelSaga(saga_id=saga_id, reason=reason), correlation_id=str(saga_id))
            await redis.xadd(settings.streams.commands(Service.ORCHESTRATOR), encode(env))  # type: ignore[arg-type]
            if not wait:
                if as_json:
                    print_json({"saga_id": str(saga_id), "message_id": env.message_id})
                else:
                    echo(f"cancel requested for saga {saga_id}")
                return OK
            echo(f"cancel requested for saga {saga_id}", err=as_json)
            progress = await watch_until_end(store, settings, saga_id, timeout=timeout, as_json=as_json)
            return OK if progress.state == "ROLLED_BACK" else NOT_COMPLETED

    raise typer.Exit(asyncio.run(go()))


# --- artifacts -------------------------------------------------------------------------


def artifact_filenames(links: list[tuple[str, str]]) -> list[str]:
    """File names for (step, name) pairs: the name, prefixed by the step where two steps
    used the same name."""
    names = [name for _, name in links]
    return [name if names.count(name) == 1 else f"{step}-{name}" for step, name in links]


def artifacts(
    saga: SagaArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Fetch every artifact into this folder", file_okay=False)
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List a saga's artifacts, or fetch them into a folder.

    Code, model, predictions, report, chart… Fetched files are checked against their
    SHA-256.

    Example: alphasaga artifacts 3f1c2a9e --out results/
    """
    settings = load_settings()

    async def go() -> list[dict[str, typing.Any]]:
        async with event_store(settings) as store:
            saga_id = await resolve_saga(store, saga)
            store_ = ArtifactStore(store.pool)
            links = await store_.list(saga_id)
            files = artifact_filenames([(link.step, link.name) for link in links])
            listed: list[dict[str, typing.Any]] = []
            for link, filename in zip(links, files, strict=True):
                item: dict[str, typing.Any] = {"step": link.step, "name": link.name, **link.ref.model_dump()}
                if out is not None:
                    content = await store_.get(link.ref.sha256)
                    if hashlib.sha256(content).hexdigest() != link.ref.sha256:
                        raise CliError(f"artifact {link.name} of step {link.step} does not match its SHA-256")
                    path = out / filename
                    try:
                        out.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(content)
                    except OSError as exc:
                        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
                    item["path"] = str(path)
                listed.append(item)
            return listed

    listed = asyncio.run(go())
    if as_json:
        print_json(listed)
        return
    if not listed:
        echo("no artifacts (a rolled-back saga removes the artifacts of its compensated steps)", err=True)
        return
    columns = ["step", "name", "kind", "media type", "size", "sha256"] + (["file"] if out else [])
    table(
        columns,
        [
            [a["step"], a["name"], a["kind"], a["media_type"], str(a["size"]), a["sha256"][:12]]
            + ([a["path"]] if out else [])
            for a in listed
        ],
    )
