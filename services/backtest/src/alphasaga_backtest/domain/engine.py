"""A vectorised backtest of a target position series decided at each bar's close.

Conventions (why: each one removes a way for a backtest to flatter a strategy)
---------------------------------------------------------------------------
* Fills, ``fill="close"`` (the default): the target decided at the close of bar ``t``
  is filled at that same close and held over bar ``t+1``; it earns
  ``close[t+1] / close[t] - 1``. The decision can only move returns from ``t+1`` on,
  never the bar it was computed on. (This is filling at the signal bar's close, with
  returns from the next bar, not "next-bar execution".) Bar 0 is always flat (no
  earlier decision) and its return is 0.
* ``fill="next_open"``: the target decided at the close of bar ``t`` is filled at the
  open of bar ``t+1``, backtesting.py's convention: over bar ``t+1`` the old position
  earns the overnight gap ``open[t+1] / close[t] - 1``, the fill pays its cost, and the
  new position earns ``close[t+1] / open[t+1] - 1``. Trades then start and end at
  opens.
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

  and with ``next_open`` the gap comes first, earned by the position held before:
  ``r[t] = (1 + held[t-1] gap[t]) (1 - costs[t]) (1 + held[t] (close[t] / open[t] - 1)) - 1``.

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
  With ``next_open`` the dates and prices are the opens the trade was filled at, and the
  gap before its exit fill is the trade's own.
* The buy-and-hold benchmark holds 1.0 from the close of bar 0, without costs, so its
  total return is ``close[-1] / close[0] - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

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
Fill = Literal["close", "next_open"]


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
    fill: Fill = "close"

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
    fill: Fill = "close",
) -> BacktestResult:
    """Backtest ``target_position`` (decided at each close), filled as ``fill`` says.

    Each fill pays ``cost_rate`` of its traded value out of equity and sizes the new
    position on what is left; see the module docstring for the closed form.
    """
    close, target = _validate(bars, target_position, commission_bps, slippage_bps)
    rate = (commission_bps + slippage_bps) / BPS
    n = close.size

    held = np.zeros(n)
    held[1:] = target[:-1]
    before = np.concatenate(([0.0], held[:-1]))  # position held into each bar's fill
    gap = np.zeros(n)
    if fill == "next_open":
        opens = _opens(bars)
        gap[1:] = opens[1:] / close[:-1] - 1.0
        move = close / opens - 1.0
        move[0] = 0.0
    elif fill == "close":
        opens = close
        move = np.zeros(n)
        move[1:] = close[1:] / close[:-1] - 1.0
    else:
        raise BacktestError(f"fill must be 'close' or 'next_open', got {fill!r}")
    change = held - before
    # Cost over pre-fill equity, 1 - E'/E = c |w1 - w0| / (1 + s c w1): in this form it is
    # exactly 0 where nothing trades, so a cost-free run is bit-for-bit the gross one.
    costs = rate * np.abs(change) / (1.0 + rate * np.sign(change) * held)
    pre = 1.0 + before * gap
    post = 1.0 + held * move
    returns = pre * (1.0 - costs) * post - 1.0
    if fill == "close":
        returns = held * move - costs * (1.0 + held * move)  # the same, without rounding noise
    equity = np.cumprod(1.0 + returns)
    benchmark_returns = np.zeros(n)
    benchmark_returns[1:] = close[1:] / close[:-1] - 1.0

    index = bars.index
    trades = _trades(index, close, opens, held, pre, post, returns, rate, fill)
    return BacktestResult(
        returns=pd.Series(returns, index=index, name="returns"),
        equity=pd.Series(equity, index=index, name="equity"),
        positions=pd.Series(held, index=index, name="position"),
        costs=pd.Series(costs, index=index, name="costs"),
        trades=trades,
        benchmark_returns=pd.Series(benchmark_returns, index=index, name="benchmark_returns"),
        benchmark_equity=pd.Series(close / close[0], index=index, name="benchmark_equity"),
        commission_bps=float(commission_bps),
        slippage_bps=float(slippage_bps),
        fill=fill,
    )


def period(result: BacktestResult, start: int, stop: int | None = None) -> BacktestResult:
    """The part of ``result`` from the close of bar ``start - 1`` to bar ``stop - 1``,
    as if it were a backtest of its own: bar ``start - 1`` becomes its bar 0 (return 0,
    equity 1), so its first return is bar ``start``'s, held position and costs
    included. Trades count in the part they were entered in (a trade entered before
    ``start`` is not in it); one still open at the part's end is marked open there.
    """
    n = len(result.returns)
    stop = n if stop is None else stop
    if not 1 <= start < stop <= n:
        raise BacktestError(f"a period needs 1 <= start < stop <= {n}, got {start}, {stop}")
    window = slice(start - 1, stop)
    returns = result.returns.iloc[window].copy()
    returns.iloc[0] = 0.0
    benchmark = result.benchmark_returns.iloc[window].copy()
    benchmark.iloc[0] = 0.0
    first, last = result.returns.index[start - 1], result.returns.index[stop - 1]
    trades = result.trades
    entered = trades[(trades["entry_date"] >= first) & (trades["entry_date"] <= last)].copy()
    running = entered["exit_date"] > last
    entered.loc[running, "exit_date"] = last
    entered.loc[running, "is_open"] = True
    return replace(
        result,
        returns=returns,
        equity=(1.0 + returns).cumprod(),
        positions=result.positions.iloc[window],
        costs=result.costs.iloc[window],
        trades=entered.reset_index(drop=True),
        benchmark_returns=benchmark,
        benchmark_equity=(1.0 + benchmark).cumprod(),
    )


def _opens(bars: pd.DataFrame) -> FloatArray:
    if "open" not in bars.columns:
        raise BacktestError("fill 'next_open' needs an 'open' column")
    opens: FloatArray = bars["open"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(opens)) or np.any(opens <= 0):
        raise BacktestError("open prices must be finite and positive")
    return opens


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
    opens: FloatArray,
    held: FloatArray,
    pre: FloatArray,
    post: FloatArray,
    returns: FloatArray,
    rate: float,
    fill: Fill,
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
    # and what the new position earns after the fill, on the bar it opens: a flip's exit
    # leg, 1 - c|w0|, and the gap before it are the previous trade's.
    own = np.where(side == previous, 1.0 + returns, post / (1.0 + rate * np.abs(held)))
    factors = np.append(own, 1.0)
    bounds = np.empty(2 * starts.size, dtype=np.intp)
    bounds[0::2] = starts
    bounds[1::2] = ends + 1
    growth = np.multiply.reduceat(factors, bounds)[0::2]
    is_open = ends == n - 1
    after = np.minimum(ends + 1, n - 1)  # the bar whose fill closes the trade
    exit_factor = np.where(is_open, 1.0, pre[after] * (1.0 - np.abs(held[ends]) * rate))
    trade_returns = growth * exit_factor - 1.0
    if fill == "next_open":
        entry_at, entry_price = starts, opens[starts]
        exit_at = np.where(is_open, ends, after)
        exit_price = np.where(is_open, close[ends], opens[after])
    else:
        entry_at, entry_price = starts - 1, close[starts - 1]
        exit_at, exit_price = ends, close[ends]

    return pd.DataFrame(
        {
            "entry_date": index[entry_at],
            "exit_date": index[exit_at],
            "direction": np.where(side[starts] > 0, "long", "short"),
            "bars": ends - starts + 1,
            "entry_price": entry_price,
            "exit_price": exit_price,
            "return": trade_returns,
            "is_open": is_open,
        }
    )
