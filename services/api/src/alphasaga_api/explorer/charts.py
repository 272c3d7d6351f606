"""Charts as SVG geometry, drawn from the API's data (a report's trades, a model's feature
importance): points and bars in a view box, which the templates place. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 640.0, 200.0


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: list[float]


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    points: str  # the SVG polyline's points
    last: float


@dataclass(frozen=True, slots=True)
class Plot:
    lines: list[Line]
    low: float
    high: float
    zero_y: float | None  # where the value 0 (or 1, for equity) runs, when it is in range


def equity_from_trades(trades: Sequence[Mapping[str, Any]]) -> list[float]:
    """Equity (start = 1) after each closed trade: the trades' growth factors multiply to
    the final equity (the backtest engine's own bookkeeping)."""
    equity, out = 1.0, [1.0]
    for trade in trades:
        value = trade.get("return")
        if isinstance(value, int | float) and math.isfinite(value):
            equity *= 1.0 + float(value)
            out.append(equity)
    return out


def drawdown(equity: Sequence[float]) -> list[float]:
    """The fall from the highest equity so far, in percent (0 or below)."""
    peak, out = -math.inf, []
    for value in equity:
        peak = max(peak, value)
        out.append(100.0 * (value / peak - 1.0) if peak > 0 else 0.0)
    return out


def plot(series: Sequence[Series], *, baseline: float | None = None, height: float = HEIGHT) -> Plot:
    """Lines scaled into one box: every series shares the y axis; x is each series' index
    spread over the width."""
    values = [v for s in series for v in s.values]
    if baseline is not None:
        values.append(baseline)
    if not values:
        return Plot([], 0.0, 0.0, None)
    low, high = min(values), max(values)
    if high - low < 1e-12:
        low, high = low - 1.0, high + 1.0

    def y(v: float) -> float:
        return round(height - (v - low) / (high - low) * height, 2)

    lines = []
    for s in series:
        step = WIDTH / max(len(s.values) - 1, 1)
        points = " ".join(f"{round(i * step, 2)},{y(v)}" for i, v in enumerate(s.values))
        lines.append(Line(s.name, points, s.values[-1] if s.values else math.nan))
    return Plot(lines, low, high, None if baseline is None else y(baseline))


@dataclass(frozen=True, slots=True)
class HBar:
    label: str
    value: float
    width: float  # a fraction of the widest


def bars(values: Mapping[str, float], *, top: int = 12) -> list[HBar]:
    """The ``top`` largest values as horizontal bars, largest first."""
    ranked = sorted(((k, float(v)) for k, v in values.items() if math.isfinite(float(v))), key=lambda kv: -abs(kv[1]))
    ranked = ranked[:top]
    widest = max((abs(v) for _, v in ranked), default=0.0) or 1.0
    return [HBar(k, v, abs(v) / widest) for k, v in ranked]


def paired_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(metric, strategy, buy and hold) for each metric, with buy and hold's figure where
    the report gives one (``buy_and_hold_<name>``)."""
    out = []
    for name, value in metrics.items():
        if name.startswith(_BUY_AND_HOLD):
            continue
        out.append((name, value, metrics.get(_BUY_AND_HOLD + name)))
    return out


_BUY_AND_HOLD = "buy_and_hold_"
