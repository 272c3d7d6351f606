"""A vectorised, next-bar-execution backtest of a target position series.

Conventions (why: each one removes a way for a backtest to flatter a strategy)
---------------------------------------------------------------------------
* Fills: the target decided at the close of bar ``t`` is filled at that same close
  and held over bar ``t+1``; it earns ``close[t+1] / close[t] - 1``. The decision can
  only move returns from ``t+1`` on, never the bar it was computed on. Bar 0 is always
  flat (no earlier decision) and its return is 0.
* Positions are fractions of equity in ``[-1, 1]`` (negative = short). NaN targets mean
  "no opinion" and are flat. A target outside ``[-1, 1]`` is an error, not clipped.
* Costs, as an event-driven broker charges them: ``c = (commission_bps +
  slippage_bps) / 10_000`` of the *traded value* ``T``, paid out of equity at the fill,
  and the new position is the target fraction of the equity *left after paying it*, so
  a position never exceeds its target. Going from ``w0`` (of the equity ``E`` before the
  fill) to ``w1`` (of the equity ``E'`` after it) solves ``E - E' = c * |w1 E' - w0 E|``::

      s = sign(w1 - w0)    E' = E (1 + s c w0) / (1 + s c w1)    T = |w1 - w0| E / (1 + s c w1)

  A full entry from flat buys ``T = E / (1 + c)`` and pays ``c E / (1 + c)``; an exit
  sells ``T = |w0| E`` and pays ``c`` of it; a flip costs exactly the exit followed by
  the entry. ``costs[t] = c T / E`` is booked in the first bar the new position is held
  (equity at a close is the equity before that close's fill), so per bar::

      r[t] = (1 - costs[t]) * (1 + held[t] * (close[t] / close[t-1] - 1)) - 1

  Between fills the position is a constant fraction of equity: costs are charged on
  target changes only; rebalancing a constant fraction as prices drift is ignored. A
  broker holding shares lets the fraction drift instead: the same for long 1.0 and
  flat, not for shorts or partial sizes.
* A position still open at the last bar is marked to the last close and not closed
  (no exit cost); its trade is flagged ``is_open``.
* Trades: a maximal run of bars holding a position of one sign. Resizing within a run
  stays in the trade; a flip from long to short ends one trade and starts the next at
  the same close. ``entry_date`` / ``exit_date`` are the closes where the trade was
  filled (the bar before the first bar held / the last bar held). Trade ``return`` is
  the compounded return on equity from its entry close to its exit close, net of its
  own entry, resize and exit costs; a flip's cost splits exactly into the old trade's
  exit and the new one's entry, so the trades' growth factors multiply to the final equity.
* The buy-and-hold benchmark holds 1.0 from the close of bar 0, without costs, so its
  total return is ``close[-1] / close[0] - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

BPS: Final = 10_000.0
TRADE_COLUMNS: Final = (
    "entry_date",
    "exit_date",
    "direction",
    "bars",
    "entry_price",
    "exit_price",
    "return",
    "is_open",
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


class BacktestError(ValueError):
    """The inputs cannot be backtested as given."""


@dataclass(frozen=True)
class BacktestResult:
    """Per-bar series on the bars' index, the trade list, and the cost parameters.

    ``positions`` is the position *held during* each bar (the target shifted by one
    bar); ``equity`` starts at 1.0 on bar 0; ``costs`` is the cost of the fill that
    opened each bar (at the previous close), as a fraction of the equity just before
    that fill: ``cost_rate`` times the traded value over that equity. It is already
    taken out of ``returns`` (see the module docstring).
    """

    returns: pd.Series
    equity: pd.Series
    positions: pd.Series
    costs: pd.Series
    trades: pd.DataFrame
    benchmark_returns: pd.Series
    benchmark_equity: pd.Series
    commission_bps: float
    slippage_bps: float

    @property
    def cost_rate(self) -> float:
        """Cost per unit of traded notional, as a fraction."""
        return (self.commission_bps + self.slippage_bps) / BPS


def run_backtest(
    bars: pd.DataFrame,
    target_position: pd.Series,
    *,
    commission_bps: float,
    slippage_bps: float,
) -> BacktestResult:
    """Backtest ``target_position`` (decided at each close) with next-bar execution.

    Each fill pays ``cost_rate`` of its traded value out of equity and sizes the new
    position on what is left; see the module docstring for the closed form.
    """
    close, target = _validate(bars, target_position, commission_bps, slippage_bps)
    rate = (commission_bps + slippage_bps) / BPS
    n = close.size

    price_returns = np.zeros(n)
    price_returns[1:] = close[1:] / close[:-1] - 1.0
    held = np.zeros(n)
    held[1:] = target[:-1]
    change = np.diff(held, prepend=0.0)
    # Cost over pre-fill equity, 1 - E'/E = c |w1 - w0| / (1 + s c w1): in this form it is
    # exactly 0 where nothing trades, so a cost-free run is bit-for-bit the gross one.
    costs = rate * np.abs(change) / (1.0 + rate * np.sign(change) * held)
    gross = held * price_returns
    returns = gross - costs * (1.0 + gross)
    equity = np.cumprod(1.0 + returns)
    benchmark_equity = close / close[0]

    index = bars.index
    trades = _trades(index, close, held, gross, returns, rate)
    return BacktestResult(
        returns=pd.Series(returns, index=index, name="returns"),
        equity=pd.Series(equity, index=index, name="equity"),
        positions=pd.Series(held, index=index, name="position"),
        costs=pd.Series(costs, index=index, name="costs"),
        trades=trades,
        benchmark_returns=pd.Series(price_returns, index=index, name="benchmark_returns"),
        benchmark_equity=pd.Series(benchmark_equity, index=index, name="benchmark_equity"),
        commission_bps=float(commission_bps),
        slippage_bps=float(slippage_bps),
    )


def _validate(
    bars: pd.DataFrame, target: pd.Series, commission_bps: float, slippage_bps: float
) -> tuple[FloatArray, FloatArray]:
    if "close" not in bars.columns:
        raise BacktestError("bars need a 'close' column")
    if len(bars) < 2:
        raise BacktestError(f"need at least 2 bars to backtest, got {len(bars)}")
    if not target.index.equals(bars.index):
        raise BacktestError(f"target_position must share the bars' index ({len(target)} vs {len(bars)} rows)")
    for name, value in (("commission_bps", commission_bps), ("slippage_bps", slippage_bps)):
        if not np.isfinite(value) or value < 0:
            raise BacktestError(f"{name} must be a finite non-negative number, got {value!r}")
    if commission_bps + slippage_bps >= BPS:  # at 100% of the traded value an exit wipes out equity
        raise BacktestError(f"commission_bps + slippage_bps must be below {BPS:,.0f}")
    close: FloatArray = bars["close"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(close)) or np.any(close <= 0):
        raise BacktestError("close prices must be finite and positive")
    try:
        position: FloatArray = target.to_numpy(dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise BacktestError(f"target_position must be numeric: {exc}") from exc
    position[np.isnan(position)] = 0.0
    outside = ~((position >= -1.0) & (position <= 1.0))
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise BacktestError(f"target_position must lie in [-1, 1]; got {position[first]!r} at {bars.index[first]}")
    return close, position


def _trades(
    index: pd.Index,
    close: FloatArray,
    held: FloatArray,
    gross: FloatArray,
    returns: FloatArray,
    rate: float,
) -> pd.DataFrame:
    """Runs of same-signed positions, found and valued without a per-bar loop."""
    n = held.size
    side = np.sign(held)
    previous = np.concatenate(([0.0], side[:-1]))
    following = np.concatenate((side[1:], [0.0]))
    starts: IntArray = np.flatnonzero((side != 0) & (side != previous))
    ends: IntArray = np.flatnonzero((side != 0) & (side != following))
    if starts.size == 0:
        return pd.DataFrame({name: [] for name in TRADE_COLUMNS})

    # This trade's growth in each of its bars: the bar's whole factor while the side is
    # unchanged (resizes are the trade's), but only the new leg's entry, 1 / (1 + c|w|),
    # on the bar it opens: a flip's exit leg, 1 - c|w0|, is the previous trade's.
    own = np.where(side == previous, 1.0 + returns, (1.0 + gross) / (1.0 + rate * np.abs(held)))
    factors = np.append(own, 1.0)
    bounds = np.empty(2 * starts.size, dtype=np.intp)
    bounds[0::2] = starts
    bounds[1::2] = ends + 1
    growth = np.multiply.reduceat(factors, bounds)[0::2]
    is_open = ends == n - 1
    exit_cost = np.where(is_open, 0.0, np.abs(held[ends]) * rate)
    trade_returns = growth * (1.0 - exit_cost) - 1.0

    return pd.DataFrame(
        {
            "entry_date": index[starts - 1],
            "exit_date": index[ends],
            "direction": np.where(side[starts] > 0, "long", "short"),
            "bars": ends - starts + 1,
            "entry_price": close[starts - 1],
            "exit_price": close[ends],
            "return": trade_returns,
            "is_open": is_open,
        }
    )
