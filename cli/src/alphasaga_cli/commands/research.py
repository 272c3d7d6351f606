"""What a researcher does: submit, watch, status, list, cancel, artifacts."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alphasaga_contracts import Priority, SagaState

from ..errors import NOT_COMPLETED, OK, CliError
from ..output import console, echo, fields, print_json, table, trace_link, verdict_line
from ..progress import Progress
from ..session import with_client
from ..timefmt import iso, parse_when, seconds

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from rich.console import Group

    from alphasaga_client import AlphaSaga, SagaSummary
    from alphasaga_contracts import ResearchRequest
    from alphasaga_shared.held import Held

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
SagaArg = Annotated[str, typer.Argument(help="Saga id, or a unique prefix of it", show_default=False)]


# --- the progress view -----------------------------------------------------------------


def _progress_view(progress: Progress) -> Group:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

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
    if progress.state == SagaState.COMPLETED:
        return f"COMPLETED{took}: {verdict_line(out['verdict'], out['metrics'])}"
    return f"{progress.state}{took}: {out['failure'] or 'no reason recorded'}"


async def watch_until_end(client: AlphaSaga, saga_id: uuid.UUID, *, timeout: float, as_json: bool) -> Progress:
    """A live table on a terminal; otherwise a line per step change (on stderr with --json)."""
    progress = Progress(saga_id)
    out = console()
    live: Any = None
    if out.is_terminal and not as_json:
        from rich.live import Live

        live = Live(_progress_view(progress), console=out, auto_refresh=False)
        live.start()
    try:
        steps: list[str] = []
        async for frame in client.watch(saga_id, timeout_s=timeout):
            if frame.event == "Started":
                steps = client.workflow_steps(frame.state.get("workflow", ""), frame.state.get("workflow_version", 0))
            lines = progress.apply(frame, steps)
            if live is not None:
                live.update(_progress_view(progress), refresh=True)
            else:
                for line in lines:
                    echo(f"  {line}", err=as_json)
    except TimeoutError as exc:
        raise CliError(str(exc), code=NOT_COMPLETED) from None
    finally:
        if live is not None:
            live.stop()
    progress.summary = await client.status(saga_id)
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
    objective: Annotated[str | None, typer.Option(help="What to look for: trend, mean_reversion or auto")] = None,
    max_drawdown: Annotated[float | None, typer.Option(help="Largest acceptable drawdown, 0-1")] = None,
    min_sharpe: Annotated[float | None, typer.Option(help="Smallest acceptable Sharpe ratio")] = None,
    commission_bps: Annotated[float | None, typer.Option(help="Commission per trade, basis points")] = None,
    slippage_bps: Annotated[float | None, typer.Option(help="Slippage per trade, basis points")] = None,
    trials: Annotated[int | None, typer.Option(help="Strategies tried so far (deflated Sharpe)")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed")] = None,
    workflow: Annotated[str | None, typer.Option(help="Workflow name (default research)")] = None,
    workflow_version: Annotated[
        int | None, typer.Option(help="Workflow version, e.g. 2 for research's DAG preview (default: the newest)")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the saga ends; exit 0 if it completed")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 900,
    priority: Annotated[
        Priority, typer.Option(help="express: the saga's steps never wait behind normal sagas' (the express lane)")
    ] = Priority.NORMAL,
    as_json: JsonFlag = False,
) -> None:
    """Submit a research request and print its saga id.

    The request (flags, or a JSON/YAML file with flags on top) is checked against its
    contract first: an invalid one is refused and nothing is published. With --wait, a
    live view shows each step until the saga ends; exit code 0 means it completed.

    Example: alphasaga submit --dataset sp500 --start 2010-01-01 --wait

    Example: alphasaga submit -f request.yaml --min-sharpe 0.5 --json

    Example: alphasaga submit --dataset nasdaq --priority express --wait
    """
    from ..requests import load_request

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
    chosen = workflow or file_workflow or "research"
    submitter = _submitter(request, chosen, workflow_version, wait, timeout, as_json, priority=priority)
    raise typer.Exit(with_client(submitter))


def _submitter(
    request: ResearchRequest,
    workflow: str,
    workflow_version: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    *,
    priority: Priority = Priority.NORMAL,
) -> Callable[[AlphaSaga], Awaitable[int]]:
    """Submit, then print the id, or with ``wait`` follow the saga to its end."""

    async def go(client: AlphaSaga) -> int:
        # The start is recorded in PostgreSQL (an outbox row the relay publishes), as the
        # API's is: nothing this command accepted is lost when Redis forgets (decision 0014).
        await client.connect()
        submitted = await client.submit_recorded(
            request, _nothing_more, workflow=workflow, workflow_version=workflow_version, priority=priority
        )
        if not wait:
            if as_json:
                print_json({"saga_id": str(submitted.saga_id), "message_id": submitted.message_id})
            else:
                echo(str(submitted.saga_id))
            return OK
        echo(f"saga {submitted.saga_id} submitted", err=as_json)
        progress = await watch_until_end(client, submitted.saga_id, timeout=timeout, as_json=as_json)
        return OK if progress.state == SagaState.COMPLETED else NOT_COMPLETED

    return go


async def _nothing_more(_conn: object, _saga_id: uuid.UUID) -> bool:
    """A submit from the command line has no owner to record with its start."""
    return True


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

    async def go(client: AlphaSaga) -> int:
        progress = await watch_until_end(client, await client.resolve(saga), timeout=timeout, as_json=as_json)
        return OK if progress.state == SagaState.COMPLETED else NOT_COMPLETED

    raise typer.Exit(with_client(go))


# --- status and list -------------------------------------------------------------------


def status(saga: SagaArg, as_json: JsonFlag = False) -> None:
    """Show a saga's current state, and what of it a service holds through an outage (for a
    saga that has not ended).

    Read from the saga list, caught up with the event log first. While PostgreSQL is
    down, a full saga id still shows the messages held for it ("waiting for PostgreSQL
    since ..."), then the error.

    Example: alphasaga status 3f1c2a9e --json
    """
    from alphasaga_client import Unavailable

    async def go(client: AlphaSaga) -> tuple[SagaSummary | Unavailable, list[Held]]:
        try:
            summary = await client.status(saga)
        except Unavailable as exc:
            held = await _held(client, saga)
            if not held:
                raise
            return exc, held
        # A saga that has ended waits for nothing: whatever a service still holds for it is
        # a late copy, ignored when it lands. Redis is not even loaded (docs/cli.md).
        return summary, [] if summary.terminal else await _held(client, summary.saga_id)

    summary, held = with_client(go)
    waiting = [h.describe() for h in held]
    if not isinstance(summary, Exception):
        _show_status(summary, waiting, as_json=as_json)
        return
    if as_json:
        print_json({"saga_id": saga, "state": None, "waiting": waiting})
    else:
        fields([["saga", saga], *(["waiting", w] for w in waiting)])
    raise summary


async def _held(client: AlphaSaga, saga: str | uuid.UUID) -> list[Held]:
    """The saga's held messages; none for an id that is not whole (a prefix is resolved in
    PostgreSQL) or while Redis cannot be reached (the status says so in its own error)."""
    from alphasaga_client import Unavailable

    try:
        saga_id = saga if isinstance(saga, uuid.UUID) else uuid.UUID(saga)
        return await client.held(saga_id)
    except (ValueError, Unavailable):
        return []


def _show_status(summary: SagaSummary, waiting: list[str], *, as_json: bool) -> None:
    state = summary.saga_state if isinstance(summary.saga_state, dict) else json.loads(summary.saga_state)
    trace = trace_link(summary.saga_id, str(state.get("traceparent") or ""))
    if as_json:
        print_json({**summary.as_json(), "trace_id": trace.split(" ")[0], "waiting": waiting})
        return
    rows = [
        ["saga", str(summary.saga_id)],
        ["state", summary.state],
        ["workflow", f"{summary.workflow} v{summary.workflow_version}"],
        ["step", f"{summary.current_step} (attempt {summary.attempt})" if summary.current_step else "-"],
        *(["waiting", w] for w in waiting),
        ["completed", ", ".join(summary.steps_completed) or "-"],
        ["started", iso(summary.started_at)],
        [
            "updated",
            f"{iso(summary.updated_at)}"
            f" ({seconds((summary.updated_at - summary.started_at).total_seconds())} after it started)",
        ],
        ["events", str(summary.version)],
        ["trace", trace],
    ]
    if summary.failure:
        rows.append(["failure", summary.failure])
    if summary.verdict or summary.metrics:
        rows.append(["verdict", verdict_line(summary.verdict, summary.metrics)])
    fields(rows)


def list_sagas(
    state: Annotated[str | None, typer.Option(help=f"Only sagas in this state: {', '.join(SagaState)}")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only sagas of this workflow")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only sagas on this dataset (or data file name)")] = None,
    accepted: Annotated[
        bool | None, typer.Option("--accepted/--rejected", help="Only sagas whose verdict was accepted / rejected")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only sagas started since: ISO time (UTC unless an offset) or an age: 2h, 3d")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only sagas started before: ISO time or an age")] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many, newest first (0: all)")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List sagas, newest first.

    Read from the saga list, caught up with the event log first.

    Example: alphasaga list --state ROLLED_BACK --since 1d
    """
    from alphasaga_client import SagaFilter

    wanted = state.upper() if state else None
    if wanted is not None and wanted not in set(SagaState):
        raise CliError(f"unknown state {state!r}: one of {', '.join(SagaState)}")
    where = SagaFilter(
        state=wanted,
        workflow=workflow,
        dataset=dataset,
        accepted=accepted,
        started_after=parse_when(since) if since else None,
        started_before=parse_when(until) if until else None,
        limit=limit or None,
    )

    async def go(client: AlphaSaga) -> list[SagaSummary]:
        return await client.sagas(where)

    summaries = with_client(go)
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

    async def go(client: AlphaSaga) -> int:
        await client.connect()
        sent = await client.cancel(saga, reason)
        if not wait:
            if as_json:
                print_json({"saga_id": str(sent.saga_id), "message_id": sent.message_id})
            else:
                echo(f"cancel requested for saga {sent.saga_id}")
            return OK
        echo(f"cancel requested for saga {sent.saga_id}", err=as_json)
        progress = await watch_until_end(client, sent.saga_id, timeout=timeout, as_json=as_json)
        return OK if progress.state == SagaState.ROLLED_BACK else NOT_COMPLETED

    raise typer.Exit(with_client(go))


# --- artifacts -------------------------------------------------------------------------


def artifact_filenames(links: list[tuple[str, str]]) -> list[str]:
    """File names for (step, name) pairs: the name, prefixed by the step where two steps
    used the same name."""
    names = [name for _, name in links]
    return [name if names.count(name) == 1 else f"{step}-{name}" for step, name in links]


def write_file(path: Path, content: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


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

    async def go(client: AlphaSaga) -> list[dict[str, Any]]:
        links = await client.artifacts(saga)
        files = artifact_filenames([(link.step, link.name) for link in links])
        listed: list[dict[str, Any]] = []
        for link, filename in zip(links, files, strict=True):
            item: dict[str, Any] = {"step": link.step, "name": link.name, **link.ref.model_dump()}
            if out is not None:
                write_file(out / filename, await client.artifact(link.ref.sha256))
                item["path"] = str(out / filename)
            listed.append(item)
        return listed

    listed = with_client(go)
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
