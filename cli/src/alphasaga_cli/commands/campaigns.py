"""``alphasaga campaign``: submit a research campaign, follow its progress and ranking, list,
cancel, and fetch its report (docs/decisions/0022)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alphasaga_contracts import SagaState

from ..errors import NOT_COMPLETED, OK, CliError
from ..output import echo, print_json, table
from ..session import with_client
from ..timefmt import iso
from .research import JsonFlag, _nothing_more, write_file

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga, CampaignStatus
    from alphasaga_contracts.campaign import RankedTrial

app = typer.Typer(
    no_args_is_help=True, suggest_commands=False, help="Research campaigns: many sagas, one honest trial count."
)
CampaignArg = Annotated[str, typer.Argument(help="Campaign id, or a unique prefix of it", show_default=False)]
FAMILIES = ("trend_following", "mean_reversion")


def _names(text: str, every: tuple[str, ...]) -> list[str]:
    return list(every) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]


@app.command()
def submit(
    datasets: Annotated[str, typer.Option(help="Built-in datasets, comma-separated, or all")] = "sp500",
    families: Annotated[str, typer.Option(help="trend_following, mean_reversion, or all")] = "all",
    budget: Annotated[int, typer.Option(help="How many child sagas (trials) to run")] = 8,
    concurrency: Annotated[int, typer.Option(help="Children running at once")] = 4,
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD")] = None,
    min_sharpe: Annotated[float | None, typer.Option(help="Smallest acceptable Sharpe ratio")] = None,
    max_drawdown: Annotated[float | None, typer.Option(help="Largest acceptable drawdown, 0-1")] = None,
    seed: Annotated[int | None, typer.Option(help="The first child's seed")] = None,
    workflow_version: Annotated[int | None, typer.Option(help="The children's research version")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until it ends; exit 0 if it completed")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 3600,
    as_json: JsonFlag = False,
) -> None:
    """Submit a research campaign: one call; the orchestrator starts the children.

    Every (dataset, family) pair in turn until the budget is spent, the seed going up by one
    each round. The trial count and the spread of the trials' Sharpe ratios that each
    child's deflated Sharpe ratio uses are the campaign's own, from its completed children.

    Example: alphasaga campaign submit --datasets sp500,nasdaq --families all --budget 40 --concurrency 8
    """
    from pydantic import ValidationError

    from alphasaga_contracts.campaign import CampaignSpec
    from alphasaga_contracts.research import BUILTIN_DATASETS

    raw: dict[str, Any] = {
        "datasets": _names(datasets, BUILTIN_DATASETS),
        "families": _names(families, FAMILIES),
        "budget": budget,
        "concurrency": concurrency,
        "start": start,
        "end": end,
        "seed": seed,
        "workflow_version": workflow_version,
    }
    limits = {k: v for k, v in (("min_sharpe", min_sharpe), ("max_drawdown", max_drawdown)) if v is not None}
    if limits:
        raw["constraints"] = limits
    try:
        spec = CampaignSpec.model_validate({k: v for k, v in raw.items() if v is not None}, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CliError(f"invalid campaign: {where + ': ' if where else ''}{first['msg']}") from None

    async def go(client: AlphaSaga) -> int:
        await client.connect()
        submitted = await client.submit_campaign_recorded(spec, _nothing_more)
        if not wait:
            print_json({"saga_id": str(submitted.saga_id)}) if as_json else echo(str(submitted.saga_id))
            return OK
        echo(f"campaign {submitted.saga_id} submitted", err=as_json)
        found = await _follow(client, str(submitted.saga_id), timeout, as_json)
        return OK if found.state == SagaState.COMPLETED else NOT_COMPLETED

    raise typer.Exit(with_client(go))


async def _follow(client: AlphaSaga, campaign: str, timeout: float, as_json: bool) -> CampaignStatus:
    """Poll the campaign until it ends, a line whenever its progress moves."""
    import asyncio
    import time

    from alphasaga_shared.errors import NotFound

    deadline, last = time.monotonic() + timeout, ""
    while True:
        try:
            found = await client.campaign(campaign)
        except NotFound:  # recorded, not started yet
            found = None
        if found is not None:
            line = _progress_line(found)
            if line != last:
                echo(f"  {line}", err=as_json)
                last = line
            if SagaState(found.state).terminal:
                _show(found, as_json=as_json)
                return found
        if time.monotonic() > deadline:
            raise CliError(f"campaign {campaign} did not end within {timeout:g}s", code=NOT_COMPLETED)
        await asyncio.sleep(1.0)


def _progress_line(c: CampaignStatus) -> str:
    best = f"; best #{c.ranking[0].trial} DSR {c.ranking[0].deflated_sharpe:.3f}" if c.ranking else ""
    return f"{c.state}: {c.done} done, {c.running} running, {c.failed} failed, {c.waiting} waiting{best}"


@app.command()
def status(campaign: CampaignArg, as_json: JsonFlag = False) -> None:
    """A campaign's progress (done/running/failed) and its ranking so far.

    The ranking deflates every completed child's out-of-sample Sharpe ratio with the trials
    counted now; a child that finished early saw fewer when it ran (the column "when run").

    Example: alphasaga campaign status 3f1c2a9e
    """

    async def go(client: AlphaSaga) -> CampaignStatus:
        return await client.campaign(campaign)

    _show(with_client(go), as_json=as_json)


def _show(c: CampaignStatus, *, as_json: bool) -> None:
    if as_json:
        print_json(c.as_json())
        return
    echo(f"campaign {c.saga_id}  {c.state}" + (f": {c.failure}" if c.failure else ""))
    echo(f"  {_progress_line(c)}")
    spread = "skill-less" if c.measured.trial_sharpe_std is None else f"{c.measured.trial_sharpe_std:.2f}"
    echo(
        f"  the verdicts count {c.measured.trials} trials ({c.measured.completed} completed children); spread {spread}"
    )
    if c.ranking:
        table(
            ["rank", "trial", "saga", "dataset", "family", "seed", "oos sharpe", "DSR", "DSR when run", "accepted"],
            [_ranked_row(i, r) for i, r in enumerate(c.ranking, 1)],
        )
    if c.report:
        echo(f"  report: alphasaga campaign report {c.saga_id} --out DIR")


def _ranked_row(place: int, r: RankedTrial) -> list[str]:
    figures = [f"{r.sharpe:.2f}", f"{r.deflated_sharpe:.3f}", _maybe(r.deflated_sharpe_when_run)]
    return [str(place), str(r.trial), str(r.saga_id)[:8], r.dataset, r.family, str(r.seed), *figures, str(r.accepted)]


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command("list")
def list_campaigns(
    limit: Annotated[int, typer.Option(min=0, help="At most this many, newest first (0: all)")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List campaigns, newest first (from the saga list).

    Example: alphasaga campaign list --json
    """
    from alphasaga_client import SagaFilter

    async def go(client: AlphaSaga) -> list[Any]:
        return await client.campaigns(SagaFilter(limit=limit or None))

    found = with_client(go)
    if as_json:
        print_json([s.as_json(with_state=False) for s in found])
        return
    if not found:
        echo("no campaigns", err=True)
        return
    table(
        ["campaign", "state", "started", "updated", "failure"],
        [[str(s.saga_id), s.state, iso(s.started_at), iso(s.updated_at), s.failure or ""] for s in found],
    )


@app.command()
def cancel(
    campaign: CampaignArg,
    reason: Annotated[str, typer.Option(help="Why, recorded in the campaign")] = "cancelled by user",
    as_json: JsonFlag = False,
) -> None:
    """Cancel a campaign: its running children are cancelled (each compensates what it did),
    no more start, and it ends ROLLED_BACK once they have ended. Children that had ended stay.

    Example: alphasaga campaign cancel 3f1c2a9e
    """

    async def go(client: AlphaSaga) -> Any:
        await client.connect()
        return await client.cancel(campaign, reason)

    sent = with_client(go)
    print_json({"saga_id": str(sent.saga_id)}) if as_json else echo(f"cancel requested for campaign {sent.saga_id}")


@app.command()
def report(
    campaign: CampaignArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the report's files here", file_okay=False)
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """A finished campaign's report: the ranked table (CSV), out-of-sample Sharpe by trial
    number and the top five's equity (PNG), with how many trials the verdicts count.

    Example: alphasaga campaign report 3f1c2a9e --out report/
    """

    async def go(client: AlphaSaga) -> tuple[CampaignStatus, dict[str, str]]:
        found = await client.campaign(campaign)
        if found.report is None:
            raise CliError(f"campaign {found.saga_id} has no report yet ({found.state}): see campaign status")
        written: dict[str, str] = {}
        if out is not None:
            files = {"table": "campaign.csv", "chart": "sharpe_by_trial.png", "equity": "top_equity.png"}
            for key, name in files.items():
                write_file(out / name, await client.artifact(found.report[key]["sha256"]))
                written[key] = str(out / name)
        return found, written

    found, written = with_client(go)
    assert found.report is not None
    if as_json:
        print_json({**found.as_json(), "files": written})
        return
    _show(found, as_json=False)
    for key in ("table", "chart", "equity"):
        echo(f"  {key}: {written.get(key) or found.report[key]['sha256']}")
