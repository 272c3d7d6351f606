"""The backtest's artifacts: a JSON report and an equity/drawdown chart (PNG).

Why deterministic bytes: artifacts are addressed by the SHA-256 of their content, so the
same backtest must produce the same bytes. The JSON has sorted keys, fixed separators,
no NaN, and floats rounded to 12 significant digits (which hides last-bit differences
between numeric libraries). The chart is drawn on a fixed-size Agg canvas without
pyplot's global state (safe in a threaded worker) and without the PNG "Software"
stamp, so it depends only on the data and the matplotlib version.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from pydantic import BaseModel

from alphasaga_backtest.domain.engine import BacktestResult
from alphasaga_backtest.domain.metrics import drawdowns
from alphasaga_contracts.research import Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_SCHEMA: Final = "alphasaga.backtest.report/2"
CHART_SIZE_INCHES: Final = (10.0, 6.0)
CHART_DPI: Final = 100
_SIGNIFICANT_DIGITS: Final = 12


def build_report(
    result: BacktestResult,
    metrics: Mapping[str, float],
    verdict: Verdict,
    *,
    parameters: Mapping[str, Any] | None = None,
    periods: Mapping[str, Mapping[str, Any]] | None = None,
    notes: Mapping[str, str] | None = None,
) -> bytes:
    """UTF-8 JSON: the whole period and its metrics, each part of it (``periods``: in and
    out of sample, with their own metrics), costs, fill, the verdict (which names the
    period it was taken on), trades, every bar's equity, the caller's parameters and ``notes`` that say in
    words what a figure is (the deflated Sharpe ratio, the fill, the sandbox)."""
    index = result.returns.index
    document = {
        "schema": REPORT_SCHEMA,
        "period": {"start": index[0], "end": index[-1], "bars": len(index)},
        "periods": dict(periods or {}),
        "costs": {
            "commission_bps": result.commission_bps,
            "slippage_bps": result.slippage_bps,
        },
        "fill": result.fill,
        "metrics": dict(metrics),
        "verdict": verdict,
        "notes": dict(notes or {}),
        "trades": result.trades.to_dict(orient="records"),
        "parameters": dict(parameters or {}),
        # Every bar's equity: a campaign's report draws its best children's curves from it.
        "equity": {"dates": list(result.equity.index), "values": result.equity.to_numpy(dtype=np.float64).tolist()},
    }
    text = json.dumps(
        _plain(document),
        sort_keys=True,
        indent=2,
        separators=(",", ": "),
        ensure_ascii=True,
        allow_nan=False,
    )
    return (text + "\n").encode("utf-8")


def new_figure() -> Figure:
    """A figure drawn by Agg, off screen. matplotlib is imported here, on the first chart, not
    when the service starts: a backtest process that draws nothing never pays for it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=CHART_SIZE_INCHES, dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    return figure


def render_chart(result: BacktestResult, *, title: str | None = None, split: pd.Timestamp | None = None) -> bytes:
    """PNG with two panels: equity vs buy-and-hold, and the strategy's drawdown; the
    out-of-sample part, from ``split`` on, is shaded and labelled on both."""
    figure = new_figure()
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = _x_values(result.equity.index)
    equity = result.equity.to_numpy(dtype=np.float64)

    top.plot(x, equity, color="tab:blue", linewidth=1.2, label="strategy")
    top.plot(
        x,
        result.benchmark_equity.to_numpy(dtype=np.float64),
        color="tab:gray",
        linewidth=1.0,
        label="buy and hold",
    )
    top.axhline(1.0, color="black", linewidth=0.5)
    top.set_ylabel("equity (start = 1)")
    top.legend(loc="upper left")
    top.grid(True, alpha=0.3)
    top.set_title(title or "Equity and drawdown")

    fall = -100.0 * drawdowns(equity)
    bottom.fill_between(x, fall, 0.0, color="tab:red", alpha=0.4, linewidth=0)
    bottom.plot(x, fall, color="tab:red", linewidth=0.8)
    bottom.set_ylabel("drawdown (%)")
    bottom.grid(True, alpha=0.3)
    if split is not None:
        end = x[-1]
        start = split.to_datetime64() if isinstance(result.equity.index, pd.DatetimeIndex) else split
        for axis in (top, bottom):
            axis.axvspan(start, end, color="tab:orange", alpha=0.12, linewidth=0)
            axis.axvline(start, color="tab:orange", linewidth=1.0)
        top.text(start, 1.0, " out of sample", transform=top.get_xaxis_transform(), va="top", color="tab:orange")

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=CHART_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _x_values(index: pd.Index) -> Any:
    if isinstance(index, pd.DatetimeIndex):
        return index.to_numpy()
    return np.arange(len(index))


# Complexity 12: one branch per type a report may hold, in the order they must be tried
# (bool before int, numpy scalars before the Python types they become).
def _plain(value: Any) -> Any:
    """Turn numpy, pandas, pydantic and date values into plain JSON values."""
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot put a non-finite number in the report: {value!r}")
        return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")
    if isinstance(value, pd.Timestamp | dt.datetime):
        stamp = pd.Timestamp(value)
        if stamp == stamp.normalize() and stamp.tzinfo is None:
            return stamp.date().isoformat()
        return stamp.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot put a {type(value).__name__} in the report")
