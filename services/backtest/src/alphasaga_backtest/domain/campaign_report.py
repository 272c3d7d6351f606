"""A campaign's report (docs/decisions/0022): every child ranked by its out-of-sample
deflated Sharpe ratio computed again with the campaign's final trials and their variance
(``alphasaga_contracts.campaign.rank``), as a CSV table; a chart of each completed child's
out-of-sample Sharpe ratio against its trial number (the order the children completed in),
with the Sharpe ratio the best of that many skill-less trials would show; and the
out-of-sample equity of the top five. Deterministic bytes, like the backtest's report."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from alphasaga_contracts import deflation
from alphasaga_contracts.campaign import Measured, RankedTrial, TrialOutcome

from .report import CHART_DPI, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TOP = 5
TABLE_COLUMNS = (
    "rank",
    "trial",
    "saga_id",
    "dataset",
    "family",
    "seed",
    "state",
    "oos_sharpe",
    "deflated_sharpe",
    "deflated_sharpe_when_run",
    "trials_when_run",
    "accepted",
    "error",
)


def table(outcomes: Sequence[TrialOutcome], ranked: Sequence[RankedTrial]) -> bytes:
    """CSV: the ranked children first, then those that did not complete."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    by_id = {o.saga_id: o for o in outcomes}
    for place, r in enumerate(ranked, 1):
        o = by_id[r.saga_id]
        figures = [_num(r.sharpe), _num(r.deflated_sharpe), _num(r.deflated_sharpe_when_run), o.trials or ""]
        writer.writerow([place, r.trial, r.saga_id, r.dataset, r.family, r.seed, o.state, *figures, r.accepted, ""])
    ranked_ids = {r.saga_id for r in ranked}
    for o in sorted((o for o in outcomes if o.saga_id not in ranked_ids), key=lambda o: o.trial):
        error = (o.error or "").replace("\n", " ")[:300]
        writer.writerow(["", o.trial, o.saga_id, o.dataset, o.family, o.seed, o.state, "", "", "", "", "", error])
    return out.getvalue().encode()


def sharpe_by_trial(outcomes: Sequence[TrialOutcome], final: Measured) -> bytes:
    """PNG: each completed child's out-of-sample Sharpe ratio at its trial number, and the
    Sharpe ratio the best of that many skill-less trials would show by luck."""
    completed = [o for o in outcomes if o.state == "COMPLETED" and o.sharpe is not None]
    figure = new_figure()
    axis = figure.subplots()
    x = np.arange(1, len(completed) + 1)
    sharpes = [o.sharpe or 0.0 for o in completed]
    colours = ["tab:green" if o.accepted else "tab:red" for o in completed]
    axis.scatter(x, sharpes, c=colours, s=30, zorder=3)
    variance = None if final.trial_sharpe_std is None else deflation.annual_to_period_variance(final.trial_sharpe_std)
    if completed:
        n_periods = min(o.n_periods or 2 for o in completed)
        bar = [
            deflation.expected_max_sharpe(max(1, int(k)), n_periods, variance) * math.sqrt(deflation.PERIODS_PER_YEAR)
            for k in x
        ]
        axis.plot(x, bar, color="tab:gray", linestyle="--", label="best of that many skill-less trials")
        axis.legend(loc="best")  # not over a trial's point (the first is often top left)
    axis.axhline(0.0, color="black", linewidth=0.5)
    axis.set_xlabel("trial number (order completed)")
    axis.set_ylabel("out-of-sample Sharpe ratio (annualised)")
    axis.set_title(f"{len(completed)} completed trials; the verdicts count {final.trials} hypotheses")
    axis.grid(True, alpha=0.3)
    return _png(figure)


def top_equity(ranked: Sequence[RankedTrial], curves: Mapping[Any, pd.Series]) -> bytes:
    """PNG: the out-of-sample equity of the top five, each rebased to 1 where it starts."""
    figure = new_figure()
    axis = figure.subplots()
    for r in ranked[:TOP]:
        curve = curves.get(r.saga_id)
        if curve is None or curve.empty:
            continue
        label = f"#{r.trial} {r.dataset} {r.family} seed {r.seed}: DSR {r.deflated_sharpe:.2f}"
        axis.plot(curve.index.to_numpy(), (curve / curve.iloc[0]).to_numpy(), linewidth=1.1, label=label)
    axis.axhline(1.0, color="black", linewidth=0.5)
    axis.set_ylabel("equity (start of out-of-sample = 1)")
    axis.set_title(f"Out-of-sample equity of the top {min(TOP, len(ranked))} by deflated Sharpe ratio")
    if ranked:
        axis.legend(loc="upper left", fontsize=8)
    axis.grid(True, alpha=0.3)
    return _png(figure)


def out_of_sample_equity(report: Mapping[str, Any]) -> pd.Series:
    """A child's out-of-sample equity from its backtest report (``report.json``)."""
    equity = report.get("equity") or {}
    series = pd.Series(equity.get("values", []), index=pd.to_datetime(equity.get("dates", [])), dtype=np.float64)
    start = ((report.get("periods") or {}).get("out_of_sample") or {}).get("start")
    return series if start is None else series[series.index >= pd.Timestamp(start)]


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=CHART_DPI, metadata={"Software": None})
    return buffer.getvalue()
