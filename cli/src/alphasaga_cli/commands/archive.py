"""``alphasaga archive``: retention. Move finished sagas' events to the archive under the
deployment's policy, say what is archived and due, and check the archived copies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import NOT_COMPLETED, CliError
from ..output import echo, print_json
from ..session import with_client
from ..timefmt import iso, seconds

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga
    from alphasaga_client.archiving import ArchiveCheck, ArchiveRun, ArchiveStatus

app = typer.Typer(
    no_args_is_help=True,
    suggest_commands=False,
    rich_markup_mode=None,
    help="Retention: finished sagas' events moved out of the hot table, whole and verified (docs/runbooks.md).",
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
HotDays = Annotated[
    float | None,
    typer.Option("--hot-days", min=0.0, help="Days a finished saga stays hot (default: ALPHASAGA_RETENTION_HOT_DAYS)"),
]


@app.command()
def run(
    hot_days: HotDays = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Move at most this many sagas")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Move the sagas that ended longer ago than the policy says to the archive.

    Each batch of sagas (ALPHASAGA_ARCHIVE_BATCH) moves in one transaction: their events and
    outgoing messages are copied, checked against a manifest (counts and a SHA-256) and only
    then removed from the hot table. Their rows stay in the saga list. Safe while the
    services run; run it from cron.

    Example: alphasaga archive run

    Example: alphasaga archive run --hot-days 30 --limit 10000
    """

    async def go(client: AlphaSaga) -> ArchiveRun:
        return await client.archive_run(hot_days=hot_days, limit=limit)

    done = with_client(go)
    if as_json:
        print_json(
            {
                "cutoff": iso(done.cutoff),
                "sagas": done.sagas,
                "events": done.events,
                "outbox": done.outbox,
                "skipped": [str(s) for s in done.skipped],
            }
        )
    else:
        echo(
            f"archived {done.sagas} sagas that ended before {iso(done.cutoff)}:"
            f" {done.events} events and {done.outbox} outgoing messages"
        )
        for saga_id in done.skipped:
            echo(f"left hot: saga {saga_id}: the list shows it ended, its log does not end it before the cut", err=True)


@app.command()
def status(hot_days: HotDays = None, as_json: JsonFlag = False) -> None:
    """The retention policy, how long the longest-waiting due saga has waited, and what the
    archive holds.

    Example: alphasaga archive status
    """

    async def go(client: AlphaSaga) -> ArchiveStatus:
        return await client.archive_status(hot_days=hot_days)

    st = with_client(go)
    totals = st.archived
    if as_json:
        print_json(
            {
                "hot_days": st.hot_days,
                "cutoff": iso(st.cutoff) if st.cutoff else None,
                "lag_seconds": st.lag_seconds,
                "archived": {
                    "sagas": totals.sagas,
                    "events": totals.events,
                    "outbox": totals.outbox,
                    "oldest": iso(totals.oldest) if totals.oldest else None,
                    "newest": iso(totals.newest) if totals.newest else None,
                },
            }
        )
        return
    if st.cutoff is None:
        echo("policy: none (ALPHASAGA_RETENTION_HOT_DAYS unset): every saga stays hot")
    else:
        echo(f"policy: finished sagas stay hot {st.hot_days:g} days (due: ended before {iso(st.cutoff)})")
        echo(f"lag: {seconds(st.lag_seconds)} (how long the longest-waiting due saga has been due)")
    span = f", archived {iso(totals.oldest)} to {iso(totals.newest)}" if totals.oldest and totals.newest else ""
    echo(f"archive: {totals.sagas} sagas, {totals.events} events, {totals.outbox} outgoing messages{span}")


@app.command()
def verify(
    saga: Annotated[str | None, typer.Argument(help="One archived saga (id or prefix)", show_default=False)] = None,
    sample: Annotated[int | None, typer.Option(min=1, help="Check this many archived sagas, at random")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check archived sagas against their manifests: counts, SHA-256, nothing left hot.

    Exit 1 on any difference. Without a saga or --sample it checks the whole archive.

    Example: alphasaga archive verify --sample 1000

    Example: alphasaga archive verify 3f1c2a9e
    """
    if saga is not None and sample is not None:
        raise CliError("give a saga or --sample, not both")

    async def go(client: AlphaSaga) -> ArchiveCheck:
        return await client.archive_verify(saga, sample=sample)

    check = with_client(go)
    if as_json:
        print_json({"sagas": check.sagas, "ok": not check.problems, "problems": check.problems})
    else:
        for problem in check.problems:
            echo(f"problem: {problem}")
    if check.problems:
        raise CliError(f"{len(check.problems)} problem(s) in {check.sagas} archived sagas", NOT_COMPLETED)
    if not as_json:
        echo(f"ok: {check.sagas} archived sagas match their manifests")
