"""The backtest service's handlers: gate the strategy's signal with the out-of-sample
probabilities, backtest it with costs (``domain``), judge it against the request's
constraints, and store the JSON report and the chart as artifacts."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import time
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from alphasaga_contracts import campaign as cp
from alphasaga_contracts import steps as st
from alphasaga_contracts.research import Verdict
from alphasaga_shared import metrics as observed
from alphasaga_shared import telemetry
from alphasaga_shared.eventstore import ArtifactNotFound, ArtifactStore
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.worker import KindHandlers, StepError, handles

from .domain import (
    BacktestError,
    BacktestResult,
    annual_to_period_variance,
    build_report,
    campaign_report,
    compute_metrics,
    deflated_sharpe_label,
    gate_signal,
    judge,
    period,
    render_chart,
    run_backtest,
)
from .domain.selection import SelectionError, select

# Take the strategy's side only where the model is at least this sure of it.
GATE_THRESHOLD = 0.5


def read_frame(content: bytes) -> pd.DataFrame:
    """A dated CSV artifact, written with 17 significant digits: pandas reads them back exactly."""
    return pd.read_csv(io.BytesIO(content), index_col="date", parse_dates=["date"])


def split_position(index: pd.DatetimeIndex, out_of_sample_start: dt.date | None) -> int | None:
    """Position of the first out-of-sample bar, or None without a hold-out."""
    if out_of_sample_start is None:
        return None
    position = int(index.searchsorted(pd.Timestamp(out_of_sample_start)))
    if not 2 <= position < len(index):
        raise BacktestError(f"out-of-sample start {out_of_sample_start} leaves no in-sample or out-of-sample bars")
    return position


def evaluate(
    bars: pd.DataFrame, signals: pd.DataFrame, predictions: pd.DataFrame, cmd: st.RunBacktest
) -> tuple[bytes, bytes, dict[str, float], Verdict]:
    """The whole backtest on plain frames: report, chart, metrics, verdict.

    The engine runs over the whole period, so a position carries across the split; the
    metrics are then taken per part, and the verdict on the out-of-sample part.
    """
    request = cmd.request
    target = gate_signal(signals["signal"], predictions["proba"], threshold=GATE_THRESHOLD)
    with telemetry.span("backtest run"):
        result = run_backtest(
            bars, target, commission_bps=request.commission_bps, slippage_bps=request.slippage_bps, fill=request.fill
        )
    # Earlier strategies the researcher counted, plus every hypothesis this saga chose from.
    trials = request.trials - 1 + (cmd.hypothesis.candidates if cmd.hypothesis is not None else 1)
    variance = annual_to_period_variance(request.trial_sharpe_std) if request.trial_sharpe_std else None
    with telemetry.span("backtest metrics"):
        metrics = compute_metrics(result, trials=trials, trial_sharpe_variance=variance)
        index = result.returns.index
        split = split_position(index, cmd.out_of_sample_start)
        periods = _periods(result, split, trials, variance)
    judged = periods.get("out_of_sample", {"start": index[0], "end": index[-1], "metrics": metrics})
    verdict = judge(judged["metrics"], request.constraints).model_copy(
        update={
            "period": "out_of_sample" if split is not None else "full",
            "start": judged["start"].date(),
            "end": judged["end"].date(),
            "sandbox": cmd.sandbox,
        }
    )
    flat = dict(metrics)
    for name, part in periods.items():
        flat.update({f"{name}.{key}": value for key, value in part["metrics"].items()})
    parameters = _parameters(cmd, trials)
    notes = {
        "deflated_sharpe": deflated_sharpe_label(trials, variance),
        "fill": FILL_NOTES[request.fill],
        "sandbox": cmd.sandbox or "not recorded",
        "trades": "counted in the period they were entered in",
    }
    report = build_report(result, metrics, verdict, parameters=parameters, periods=periods, notes=notes)
    with telemetry.span("backtest chart"):
        chart = render_chart(
            result,
            title=f"{request.dataset or request.data_path}: strategy vs buy and hold",
            split=None if split is None else index[split],
        )
    return report, chart, flat, verdict


def _periods(result: BacktestResult, split: int | None, trials: int, variance: float | None) -> dict[str, Any]:
    """In-sample and out-of-sample metrics, each with its first and last date."""
    parts = {} if split is None else {"in_sample": period(result, 1, split), "out_of_sample": period(result, split)}
    return {
        name: {
            "start": part.returns.index[1],
            "end": part.returns.index[-1],
            "bars": len(part.returns) - 1,
            "metrics": compute_metrics(part, trials=trials, trial_sharpe_variance=variance),
        }
        for name, part in parts.items()
    }


def _parameters(cmd: st.RunBacktest, trials: int) -> dict[str, Any]:
    """What the report says the backtest was run with."""
    request = cmd.request
    return {
        "commission_bps": request.commission_bps,
        "slippage_bps": request.slippage_bps,
        "fill": request.fill,
        "gate_threshold": GATE_THRESHOLD,
        "trials": trials,
        "trials_before_this_saga": request.trials - 1,
        "planner_candidates": trials - request.trials + 1,
        "trial_sharpe_std": request.trial_sharpe_std,
        "out_of_sample_fraction": request.out_of_sample_fraction,
        "constraints": request.constraints.model_dump(),
        "saga_id": str(cmd.saga_id),
    }


FILL_NOTES = {
    "close": "a decision at a bar's close is filled at that close; the position earns from the next bar",
    "next_open": "a decision at a bar's close is filled at the next bar's open",
}


class Backtest:
    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts

    async def run(self, cmd: st.RunBacktest) -> st.BacktestCompleted:
        bars = read_frame(await self.artifacts.get(cmd.dataset.sha256))
        signals = read_frame(await self.artifacts.get(cmd.signals.sha256))
        predictions = read_frame(await self.artifacts.get(cmd.predictions.sha256))
        try:
            started = time.perf_counter()
            report, chart, metrics, verdict = await asyncio.to_thread(evaluate, bars, signals, predictions, cmd)
            observed.BACKTEST_SECONDS.observe(time.perf_counter() - started, observed.exemplar())
        except (BacktestError, KeyError, ArithmeticError, ValueError) as exc:
            # evaluate is a pure function of the command and its artifacts: what fails in it
            # fails again on every redelivery, so it is the input's fault (an overflow, a
            # non-finite metric), answered now rather than retried into a dead letter.
            raise StepError("invalid_input", f"cannot backtest: {type(exc).__name__}: {exc}") from None
        report_ref = await self.artifacts.put(
            cmd.saga_id, cmd.step, "report.json", "report", report, "application/json"
        )
        chart_ref = await self.artifacts.put(cmd.saga_id, cmd.step, "chart.png", "chart", chart, "image/png")
        return st.BacktestCompleted(
            saga_id=cmd.saga_id,
            step=cmd.step,
            attempt=cmd.attempt,
            report=report_ref,
            chart=chart_ref,
            metrics=metrics,
            verdict=verdict,
        )

    async def undo(self, cmd: st.CompensateStep) -> None:
        await self.artifacts.remove_step(cmd.saga_id, cmd.step)


async def choose(cmd: st.SelectModel) -> st.ModelSelected:
    """The better of the backtests (``domain.selection``), with every candidate's figure. It
    stores nothing: the chosen branch's report and chart are referred to, not copied."""
    try:
        selected, criterion, compared = select({item: b.metrics for item, b in cmd.backtest.items()})
    except SelectionError as exc:
        raise StepError("invalid_input", str(exc)) from None
    chosen = cmd.backtest[selected]
    return st.ModelSelected(
        saga_id=cmd.saga_id,
        step=cmd.step,
        attempt=cmd.attempt,
        selected=selected,
        criterion=criterion,
        compared=compared,
        report=chosen.report,
        chart=chosen.chart,
        metrics=chosen.metrics,
        verdict=chosen.verdict,
    )


class CampaignReport:
    """A campaign's report: the ranking again with the final trials, a table and two charts,
    stored as the campaign's artifacts (``domain.campaign_report``)."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts

    async def run(self, cmd: st.ReportCampaign) -> st.CampaignReported:
        final, ranked = cp.rank(cmd.outcomes)
        curves = {}
        by_id = {o.saga_id: o for o in cmd.outcomes}
        for r in ranked[: campaign_report.TOP]:
            report = by_id[r.saga_id].report
            if report is not None:  # a child's report that is gone (undone) is drawn without it
                try:
                    content = await self.artifacts.get(report.sha256)
                except ArtifactNotFound:
                    continue
                curves[r.saga_id] = campaign_report.out_of_sample_equity(json.loads(content))
        table = campaign_report.table(cmd.outcomes, ranked)
        chart, equity = await asyncio.to_thread(
            lambda: (campaign_report.sharpe_by_trial(cmd.outcomes, final), campaign_report.top_equity(ranked, curves))
        )
        put = self.artifacts.put
        return st.CampaignReported(
            saga_id=cmd.saga_id,
            step=cmd.step,
            attempt=cmd.attempt,
            table=await put(cmd.saga_id, cmd.step, "campaign.csv", "table", table, "text/csv"),
            chart=await put(cmd.saga_id, cmd.step, "sharpe_by_trial.png", "chart", chart, "image/png"),
            equity=await put(cmd.saga_id, cmd.step, "top_equity.png", "chart", equity, "image/png"),
            trials=final.trials,
            trial_sharpe_std=final.trial_sharpe_std,
            ranking=ranked,
        )

    async def undo(self, cmd: st.CompensateStep) -> None:
        await self.artifacts.remove_step(cmd.saga_id, cmd.step)


async def nothing_to_undo(cmd: st.CompensateStep) -> None:
    """Selecting stores nothing and changes nothing."""


async def make_handlers(ctx: ServiceContext) -> list[KindHandlers]:
    artifacts = ArtifactStore(ctx.store.pool)
    backtest, report = Backtest(artifacts), CampaignReport(artifacts)
    return [
        handles(st.BACKTEST, run=backtest.run, undo=backtest.undo),
        handles(st.SELECT, run=choose, undo=nothing_to_undo),
        handles(st.CAMPAIGN_REPORT, run=report.run, undo=report.undo),
    ]
