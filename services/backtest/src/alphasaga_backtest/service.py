"""The backtest service's handlers: gate the strategy's signal with the out-of-sample
probabilities, backtest it with costs (``domain``), judge it against the request's
constraints, and store the JSON report and the chart as artifacts."""

from __future__ import annotations

import asyncio
import io

import pandas as pd  # type: ignore[import-untyped]

from alphasaga_contracts import Service
from alphasaga_contracts import steps as st
from alphasaga_contracts.research import Verdict
from alphasaga_shared.eventstore import ArtifactStore
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.worker import StepError, WorkerSpec

from .domain import BacktestError, build_report, compute_metrics, gate_signal, judge, render_chart, run_backtest

# Take the strategy's side only where the model is at least this sure of it.
GATE_THRESHOLD = 0.5


def read_frame(content: bytes) -> pd.DataFrame:
    """A dated CSV artifact, written with 17 significant digits: pandas reads them back exactly."""
    return pd.read_csv(io.BytesIO(content), index_col="date", parse_dates=["date"])


def evaluate(
    bars: pd.DataFrame, signals: pd.DataFrame, predictions: pd.DataFrame, cmd: st.RunBacktest
) -> tuple[bytes, bytes, dict[str, float], Verdict]:
    """The whole backtest on plain frames: report, chart, metrics, verdict."""
    request = cmd.request
    target = gate_signal(signals["signal"], predictions["proba"], threshold=GATE_THRESHOLD)
    result = run_backtest(bars, target, commission_bps=request.commission_bps, slippage_bps=request.slippage_bps)
    metrics = compute_metrics(result, trials=request.trials)
    verdict = judge(metrics, request.constraints)
    parameters = {
        "commission_bps": request.commission_bps,
        "slippage_bps": request.slippage_bps,
        "gate_threshold": GATE_THRESHOLD,
        "trials": request.trials,
        "constraints": request.constraints.model_dump(),
        "saga_id": str(cmd.saga_id),
    }
    report = build_report(result, metrics, verdict, parameters=parameters)
    chart = render_chart(result, title=f"{request.dataset or request.data_path}: strategy vs buy and hold")
    return report, chart, metrics, verdict


class Backtest:
    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts

    async def run(self, cmd: st.RunBacktest) -> st.BacktestCompleted:
        bars = read_frame(await self.artifacts.get(cmd.dataset.sha256))
        signals = read_frame(await self.artifacts.get(cmd.signals.sha256))
        predictions = read_frame(await self.artifacts.get(cmd.predictions.sha256))
        try:
            report, chart, metrics, verdict = await asyncio.to_thread(evaluate, bars, signals, predictions, cmd)
        except (BacktestError, KeyError) as exc:
            raise StepError("invalid_input", f"cannot backtest: {exc}") from None
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

    async def undo(self, cmd: st.CompensateBacktest) -> None:
        await self.artifacts.remove_step(cmd.saga_id, cmd.step)


async def make_spec(ctx: ServiceContext) -> WorkerSpec:
    backtest = Backtest(ArtifactStore(ctx.store.pool))
    return WorkerSpec(
        service=Service.BACKTEST,
        run=backtest.run,
        undo=backtest.undo,
    )
