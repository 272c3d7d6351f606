"""Research domain (issue #4): our vectorised backtest beside backtesting.py, on the same
bars, strategy, fill rule and costs, in the same run; and the walk-forward training time.

Why a peer in the same run: as for the platform benchmarks, only the ratio survives a
change of machine. Why an equivalence check beside the timing: a faster backtest that
books other trades would only be a faster wrong answer, so the peer is configured to
fill the way ours does and both results are compared trade by trade and to the cent.

Peer configuration (backtesting.py 0.6, event-driven, one ``next()`` call per bar):

* ``trade_on_close=True``: a market order placed in ``next()`` at bar ``t`` is filled at
  ``close[t]``, our default fill rule; with ``fill="next_open"`` the peer runs with its
  own default, ``trade_on_close=False`` (filled at ``open[t+1]``), issue #12.
* ``FractionalBacktest`` with a unit of 2**-30: backtesting.py trades whole units only,
  so at ~1,000-3,000 per S&P 500 unit a 10,000 account would leave up to a third of its
  cash idle. Trading 2**-30 of a unit leaves less than 3e-6 uninvested, and a power of
  two scales the prices exactly, so the peer's moving averages and crossings are
  bit-for-bit ours (a scale of 1e-8 could flip a near-tie).
* ``buy()`` with its default size (all available equity), ``position.close()`` to go
  flat; ``exclusive_orders=True``, no hedging, ``margin=1`` (no leverage).
* ``commission`` = our commission + slippage. Both engines charge it on the traded
  value at every fill, out of equity, and size an entry on what is left (``E / (1 + c)``
  of ``E``). Not ``spread``: the peer adds the spread to the entry price only, once per
  round trip.
* The peer's indicator is the 0/1 signal, not the two averages: backtesting.py calls
  ``next()`` from one bar *after* every indicator is defined (``start = 1 + warm-up``
  in ``Backtest.run``), so with the averages as indicators it could only open the first
  trade one bar later than ours.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import product
from typing import Any, Final
from unittest import mock

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
from backtesting import Strategy
from backtesting import __version__ as backtesting_version
from backtesting.lib import FractionalBacktest

import alphasaga_ml.domain.train as ml_train
from alphasaga_backtest.domain import BacktestResult, compute_metrics, run_backtest
from alphasaga_backtest.domain.engine import Fill
from alphasaga_reasoning.domain.marketdata import load_builtin

from .common import median_of

DATASET: Final = "sp500"
CASH: Final = 10_000.0
COMMISSION_BPS: Final = 5.0  # the ResearchRequest defaults
SLIPPAGE_BPS: Final = 2.0
FAST: Final = 20
SLOW: Final = 50
GRID_FAST: Final = (5, 10, 15, 20, 25)
GRID_SLOW: Final = tuple(range(30, 130, 10))
FRACTIONAL_UNIT: Final = 2.0**-30
SINGLE_REPEATS: Final = 30
RUNS: Final = 3
HORIZON: Final = FAST // 2  # what the rule planner picks for a 20/50 crossover
SEED: Final = 7

FloatArray = npt.NDArray[np.float64]
Trade = tuple[pd.Timestamp, pd.Timestamp | None]  # entry fill, exit fill (None: still open)


# --------------------------------------------------------------------------- strategy


def sma(values: npt.ArrayLike, window: int) -> FloatArray:
    """Simple moving average, NaN during the warm-up (shared by both engines)."""
    return np.asarray(pd.Series(np.asarray(values, dtype=np.float64)).rolling(window).mean(), dtype=np.float64)


def crossover(close: npt.ArrayLike, fast: int, slow: int) -> FloatArray:
    """1.0 where the fast average is above the slow one, else 0.0 (flat in the warm-up)."""
    with np.errstate(invalid="ignore"):
        return (sma(close, fast) > sma(close, slow)).astype(np.float64)


def ours(
    bars: pd.DataFrame, fast: int, slow: int, *, cost_bps: float, fill: Fill = "close"
) -> tuple[BacktestResult, dict[str, float]]:
    """Signal, backtest and metrics: what the backtest service does for one strategy."""
    target = pd.Series(crossover(bars["close"].to_numpy(), fast, slow), index=bars.index)
    result = run_backtest(bars, target, commission_bps=cost_bps, slippage_bps=0.0, fill=fill)
    return result, compute_metrics(result)


class SmaCross(Strategy):  # type: ignore[misc]  # backtesting.py is untyped
    """The same long/flat crossover, decided bar by bar in the peer's event loop."""

    fast = FAST
    slow = SLOW

    def init(self) -> None:
        self.signal = self.I(crossover, self.data.Close, self.fast, self.slow, name="signal", overlay=False)

    def next(self) -> None:
        if self.signal[-1] > 0:
            if not self.position:
                self.buy()
        elif self.position:
            self.position.close()


def peer(bars: pd.DataFrame, *, cost_bps: float, fill: Fill = "close") -> Any:
    """The peer, set up to fill and charge the way ours does (see the module docstring);
    ``next_open`` is its own default, ``trade_on_close=False``."""
    ohlc = bars.rename(columns=str.capitalize)
    return FractionalBacktest(
        ohlc,
        SmaCross,
        cash=CASH,
        commission=cost_bps / 10_000,
        margin=1.0,
        trade_on_close=fill == "close",
        hedging=False,
        exclusive_orders=True,
        fractional_unit=FRACTIONAL_UNIT,
    )


@contextmanager
def quiet() -> Iterator[None]:
    """The peer warns about trades left open at the end; both engines mark them to market."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# --------------------------------------------------------------------------- 1. one backtest


@dataclass(frozen=True)
class Single:
    bars: int
    ours_s: float
    peer_s: float
    signal_s: float
    backtest_s: float
    metrics_s: float


def single(bars: pd.DataFrame, cost_bps: float, repeats: int = SINGLE_REPEATS) -> Single:
    """Median time per backtest, ours and the peer's interleaved so both see the same machine.

    The peer's ``Backtest`` is built once, as ``optimize`` does; only ``run()`` is timed
    (it computes the indicator and the statistics, as ours computes signal and metrics).
    """
    bt = peer(bars, cost_bps=cost_bps)
    close = bars["close"].to_numpy()
    ours_runs: list[float] = []
    peer_runs: list[float] = []
    parts: list[tuple[float, float, float]] = []
    with quiet():
        bt.run()
        ours(bars, FAST, SLOW, cost_bps=cost_bps)  # warm-up: imports, caches
        for _ in range(repeats):
            ours_runs.append(timed(lambda: ours(bars, FAST, SLOW, cost_bps=cost_bps)))
            peer_runs.append(timed(bt.run))
            t0 = time.perf_counter()
            target = pd.Series(crossover(close, FAST, SLOW), index=bars.index)
            t1 = time.perf_counter()
            result = run_backtest(bars, target, commission_bps=cost_bps, slippage_bps=0.0)
            t2 = time.perf_counter()
            compute_metrics(result)
            t3 = time.perf_counter()
            parts.append((t1 - t0, t2 - t1, t3 - t2))
    return Single(
        bars=len(bars),
        ours_s=median_of(ours_runs),
        peer_s=median_of(peer_runs),
        signal_s=median_of([p[0] for p in parts]),
        backtest_s=median_of([p[1] for p in parts]),
        metrics_s=median_of([p[2] for p in parts]),
    )


# --------------------------------------------------------------------------- 2. equivalence


@dataclass(frozen=True)
class Equivalence:
    cost_bps: float
    fill: Fill
    trades_ours: int
    trades_peer: int
    open_ours: int
    open_peer: int
    dates_match: bool
    max_trade_return_diff: float
    final_ours: float
    final_peer: float
    max_curve_diff: float
    replay_diff: float
    max_idle_cash: float

    @property
    def final_diff(self) -> float:
        return abs(self.final_ours - self.final_peer)


def _our_trades(result: BacktestResult) -> list[Trade]:
    t = result.trades
    return [
        (pd.Timestamp(e), None if is_open else pd.Timestamp(x))
        for e, x, is_open in zip(t["entry_date"], t["exit_date"], t["is_open"], strict=True)
    ]


def _peer_trades(stats: Any) -> list[Trade]:
    closed = stats["_trades"]
    still_open = stats["_strategy"].trades
    trades: list[Trade] = [
        (pd.Timestamp(e), pd.Timestamp(x)) for e, x in zip(closed["EntryTime"], closed["ExitTime"], strict=True)
    ]
    return trades + [(pd.Timestamp(t.entry_time), None) for t in still_open]


def idle_cash(stats: Any, cost_bps: float) -> FloatArray:
    """Cash the peer leaves uninvested at each closed trade's entry, in money.

    It buys whole units only (here 2**-30 of an index unit), so it invests a little less
    than ``E / (1 + c)``; that rounding is all that is left between the two engines.
    """
    closed = stats["_trades"]
    equity = stats["_equity_curve"]["Equity"].to_numpy(dtype=np.float64)
    before = equity[closed["EntryBar"].to_numpy()]  # recorded before a close fill
    spent = closed["Size"].abs().to_numpy(dtype=np.float64) * closed["EntryPrice"].to_numpy(dtype=np.float64)
    return np.asarray(before - spent * (1.0 + cost_bps / 10_000), dtype=np.float64)


def whole_unit_replay(bars: pd.DataFrame, result: BacktestResult, cost_bps: float, fill: Fill = "close") -> float:
    """Our (long, full-size) trades and cost rule, sized in the peer's whole units: the
    final equity the peer should report.

    Each entry buys ``floor(E (1 - eps) / (p (1 + c)))`` units of ``p = close * unit``, as
    ``_Broker._process_orders`` sizes ``buy()``; the commission is ``c`` of the value
    traded at entry and at exit; an open trade is marked to the last close. If this
    matches the peer, the whole-unit rounding is the only thing that differs.
    """
    c = cost_bps / 10_000
    close = bars["close"].to_numpy(dtype=np.float64) * FRACTIONAL_UNIT
    fills = close if fill == "close" else bars["open"].to_numpy(dtype=np.float64) * FRACTIONAL_UNIT
    trades = result.trades
    entries = bars.index.get_indexer(trades["entry_date"])
    exits = bars.index.get_indexer(trades["exit_date"])
    cash = CASH
    for entry, exit_, is_open in zip(entries, exits, trades["is_open"], strict=True):
        price = fills[entry]
        out = close[exit_] if is_open else fills[exit_]
        units = int(cash * (1 - sys.float_info.epsilon) // (price + price * c))
        cash -= units * price * c
        cash += units * (out - price) - (0.0 if is_open else units * out * c)
    return float(cash)


def equivalence(bars: pd.DataFrame, cost_bps: float, fill: Fill = "close") -> Equivalence:
    """Trades, per-trade returns, the equity curve and the final equity of both engines."""
    result, _ = ours(bars, FAST, SLOW, cost_bps=cost_bps, fill=fill)
    with quiet():
        stats = peer(bars, cost_bps=cost_bps, fill=fill).run()
    our_trades, peer_trades = _our_trades(result), _peer_trades(stats)

    our_curve = CASH * result.equity.to_numpy(dtype=np.float64)
    peer_curve = stats["_equity_curve"]["Equity"].to_numpy(dtype=np.float64)
    # A closed trade's return on equity: its P&L (both commissions in) over the peer's
    # equity at the close it was entered on, recorded before that fill.
    closed = stats["_trades"]
    # At an open fill the equity before it is the previous close's (long/flat: all cash).
    before = closed["EntryBar"].to_numpy() - (0 if fill == "close" else 1)
    peer_returns = closed["PnL"].to_numpy(dtype=np.float64) / peer_curve[before]
    our_returns = result.trades.loc[~result.trades["is_open"], "return"].to_numpy(dtype=np.float64)
    same_count = our_returns.size == peer_returns.size
    final_ours, final_peer = float(our_curve[-1]), float(stats["Equity Final [$]"])
    return Equivalence(
        cost_bps=cost_bps,
        fill=fill,
        trades_ours=len(our_trades),
        trades_peer=len(peer_trades),
        open_ours=sum(x is None for _, x in our_trades),
        open_peer=sum(x is None for _, x in peer_trades),
        dates_match=our_trades == peer_trades,
        max_trade_return_diff=float(np.max(np.abs(our_returns - peer_returns))) if same_count else float("nan"),
        final_ours=final_ours,
        final_peer=final_peer,
        max_curve_diff=float(np.max(np.abs(our_curve - peer_curve))),
        replay_diff=abs(whole_unit_replay(bars, result, cost_bps, fill) - final_peer),
        max_idle_cash=float(np.max(idle_cash(stats, cost_bps), initial=0.0)) if fill == "close" else math.nan,
    )


# --------------------------------------------------------------------------- 3. grid


@dataclass(frozen=True)
class Grid:
    combos: int
    ours_s: float
    optimize_s: float
    loop_s: float
    best_ours: tuple[int, int]
    best_peer: tuple[int, int]
    max_final_diff: float
    max_replay_diff: float
    peer_missing: int


def grid(bars: pd.DataFrame, cost_bps: float, runs: int = RUNS) -> Grid:
    """The same grid three ways: our loop, the peer's ``optimize`` (a process pool, one
    process per core, plus one more run of the best combination, as it returns its
    statistics) and the peer's ``run()`` in a loop (one process, like ours)."""
    combos = list(product(GRID_FAST, GRID_SLOW))
    bt = peer(bars, cost_bps=cost_bps)
    finals: dict[tuple[int, int], float] = {}
    heatmap: Any = None

    def our_grid() -> None:
        for fast, slow in combos:
            result, _ = ours(bars, fast, slow, cost_bps=cost_bps)
            finals[(fast, slow)] = CASH * float(result.equity.iloc[-1])

    def peer_optimize() -> None:
        nonlocal heatmap
        _, heatmap = bt.optimize(
            fast=list(GRID_FAST), slow=list(GRID_SLOW), maximize="Equity Final [$]", return_heatmap=True
        )

    def peer_loop() -> None:
        for fast, slow in combos:
            bt.run(fast=fast, slow=slow)

    ours_runs: list[float] = []
    optimize_runs: list[float] = []
    loop_runs: list[float] = []
    with quiet():
        for _ in range(runs):
            ours_runs.append(timed(our_grid))
            optimize_runs.append(timed(peer_optimize))
            loop_runs.append(timed(peer_loop))

    peer_finals = {(int(f), int(s)): float(v) for (f, s), v in heatmap.items()}
    compared = [k for k in combos if np.isfinite(peer_finals.get(k, np.nan))]
    replayed = []
    for k in compared:  # untimed: what is left once the peer's whole units are replayed
        result, _ = ours(bars, *k, cost_bps=cost_bps)
        replayed.append(abs(whole_unit_replay(bars, result, cost_bps) - peer_finals[k]))
    return Grid(
        combos=len(combos),
        ours_s=median_of(ours_runs),
        optimize_s=median_of(optimize_runs),
        loop_s=median_of(loop_runs),
        best_ours=max(combos, key=finals.__getitem__),
        best_peer=max(compared, key=peer_finals.__getitem__),
        max_final_diff=max(abs(finals[k] - peer_finals[k]) for k in compared),
        max_replay_diff=max(replayed),
        peer_missing=len(combos) - len(compared),
    )


# --------------------------------------------------------------------------- 4. ML training


def features(bars: pd.DataFrame) -> pd.DataFrame:
    """Causal features of the kind a trend-following hypothesis asks for, plus its signal."""
    close = bars["close"]
    log_returns = np.log(close).diff()
    mean20, std20 = close.rolling(20).mean(), close.rolling(20).std()
    return pd.DataFrame(
        {
            "sma_ratio_20": close / mean20 - 1.0,
            "sma_ratio_50": close / close.rolling(50).mean() - 1.0,
            "momentum_50": close / close.shift(50) - 1.0,
            "volatility_20": log_returns.rolling(20).std(),
            "zscore_20": (close - mean20) / std20,
            ml_train.SIGNAL_COLUMN: crossover(close.to_numpy(), FAST, SLOW),
        },
        index=bars.index,
    )


@dataclass(frozen=True)
class Training:
    rows: int
    columns: int
    folds: int
    fits: int
    total_s: float
    fit_s: float
    refusal_rows: int
    refusal_s: float


def training(bars: pd.DataFrame, runs: int = RUNS) -> Training:
    """Median time of ``train_walk_forward`` and of the LightGBM fits inside it (timed by
    wrapping the module's ``_fit``, so the share is measured, not profiled)."""
    signals = features(bars)
    original = ml_train._fit
    fit_times: list[float] = []

    def timed_fit(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            fit_times.append(time.perf_counter() - started)

    totals: list[float] = []
    fits_per_run: list[float] = []
    folds = 0
    with mock.patch.object(ml_train, "_fit", timed_fit):
        ml_train.train_walk_forward(bars, signals, horizon=HORIZON, seed=SEED)  # warm-up
        for _ in range(runs):
            fit_times.clear()
            started = time.perf_counter()
            result = ml_train.train_walk_forward(bars, signals, horizon=HORIZON, seed=SEED)
            totals.append(time.perf_counter() - started)
            fits_per_run.append(sum(fit_times))
            folds = len(result.folds)
    # Too few rows is refused before any fit: one bar short of the minimum.
    short = ml_train.required_rows(horizon=HORIZON, n_splits=5, min_train=250) - 1
    refusals: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        try:
            ml_train.train_walk_forward(bars.iloc[:short], signals.iloc[:short], horizon=HORIZON, seed=SEED)
        except ml_train.TrainingError:
            refusals.append(time.perf_counter() - started)
        else:
            raise AssertionError(f"{short} rows were trained on; the bench expects a refusal")
    return Training(
        rows=len(bars),
        columns=signals.shape[1],
        folds=folds,
        fits=len(fit_times),
        total_s=median_of(totals),
        fit_s=median_of(fits_per_run),
        refusal_rows=short,
        refusal_s=median_of(refusals),
    )


# --------------------------------------------------------------------------- 5. look-ahead check

# The check before issue #12: four truncations in the second half of the data.
OLD_CUTS: Final = (2515, 3144, 3773, 4402)


@dataclass(frozen=True)
class CheckCost:
    family: str
    sandbox: str
    runs: int
    plain_wall_s: float
    plain_cpu_s: float
    old_wall_s: float
    old_cpu_s: float
    check_wall_s: float
    check_cpu_s: float
    warm_wall_s: float
    warm_cpu_s: float


def lookahead_costs(bars: pd.DataFrame, runs: int = RUNS) -> list[CheckCost]:
    """Per rule-planner strategy on the 5,031 bars, each sandboxed from a cold process:
    one plain run, the old four-cut check and the every-bar check, interleaved."""
    from alphasaga_codegen.domain import (
        CutPoints,
        Sandbox,
        check_no_lookahead,
        render_strategy,
        resolve_sandbox,
        run_strategy,
    )
    from alphasaga_contracts.research import ResearchRequest
    from alphasaga_reasoning.domain import measure, plan_hypothesis

    measured = measure(bars)
    out = []
    for objective in ("trend", "mean_reversion"):
        source = render_strategy(plan_hypothesis(ResearchRequest(dataset=DATASET, objective=objective), measured))
        old = CutPoints(mirrored=(), truncated=tuple(t - 1 for t in OLD_CUTS))
        samples: dict[str, list[tuple[float, float]]] = {"plain": [], "old": [], "check": [], "warm": []}
        check_runs, label = 0, ""
        warm = Sandbox(resolve_sandbox())
        check_no_lookahead(source, bars, sandbox=warm)  # the first job starts the next runner
        for _ in range(runs):
            time.sleep(2.0)  # as between two jobs in the service: the runner is ready
            started = time.perf_counter()
            ahead = check_no_lookahead(source, bars, sandbox=warm)
            samples["warm"].append((time.perf_counter() - started, ahead.sandbox.job_cpu_seconds))
            started = time.perf_counter()
            plain = run_strategy(source, bars)
            samples["plain"].append((time.perf_counter() - started, plain.cpu_seconds))
            started = time.perf_counter()
            four = check_no_lookahead(source, bars, cuts=old)
            samples["old"].append((time.perf_counter() - started, four.sandbox.cpu_seconds))
            started = time.perf_counter()
            report = check_no_lookahead(source, bars)
            samples["check"].append((time.perf_counter() - started, report.sandbox.cpu_seconds))
            check_runs, label = report.runs, report.sandbox.label
        warm.close()
        med = {k: (median_of([w for w, _ in v]), median_of([c for _, c in v])) for k, v in samples.items()}
        out.append(
            CheckCost(
                family=objective,
                sandbox=label,
                runs=check_runs,
                plain_wall_s=med["plain"][0],
                plain_cpu_s=med["plain"][1],
                old_wall_s=med["old"][0],
                old_cpu_s=med["old"][1],
                check_wall_s=med["check"][0],
                check_cpu_s=med["check"][1],
                warm_wall_s=med["warm"][0],
                warm_cpu_s=med["warm"][1],
            )
        )
    return out


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Report:
    first: pd.Timestamp
    last: pd.Timestamp
    single: Single
    equivalence: tuple[Equivalence, ...]
    grid: Grid
    training: Training
    lookahead: tuple[CheckCost, ...]


def measure() -> Report:
    """Everything, on the real S&P 500 bars; no servers needed."""
    bars = load_builtin(DATASET)
    cost = COMMISSION_BPS + SLIPPAGE_BPS
    return Report(
        first=bars.index[0],
        last=bars.index[-1],
        single=single(bars, cost),
        equivalence=tuple(equivalence(bars, c, f) for f in ("close", "next_open") for c in (0.0, cost)),
        grid=grid(bars, cost),
        training=training(bars),
        lookahead=tuple(lookahead_costs(bars)),
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _money(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:,.2f}" if value >= 0.005 else f"{value:.1e}"


def _rows(header: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(r: Report) -> str:
    """The tables, in the shape of docs/benchmarks.md."""
    s, g, t = r.single, r.grid, r.training
    cost = COMMISSION_BPS + SLIPPAGE_BPS
    out = [
        f"## Research domain: {DATASET}, {s.bars:,} daily bars {r.first:%Y-%m-%d} to {r.last:%Y-%m-%d}, "
        f"SMA {FAST}/{SLOW} crossover long/flat, costs {COMMISSION_BPS:g} + {SLIPPAGE_BPS:g} bps, "
        f"backtesting.py {backtesting_version}\n",
        f"### One backtest (median of {SINGLE_REPEATS}, interleaved)\n",
        _rows(
            ("what", "backtesting.py", "AlphaSaga", "ratio", "target"),
            "lrrrr",
            [
                (
                    f"SMA {FAST}/{SLOW}, signal + backtest + metrics",
                    _ms(s.peer_s),
                    _ms(s.ours_s),
                    f"{s.peer_s / s.ours_s:.1f}x faster",
                    "≤ 5 ms, ≥ 10x",
                )
            ],
        ),
        f"\nAlphaSaga's share: signal {_ms(s.signal_s)}, run_backtest {_ms(s.backtest_s)}, "
        f"compute_metrics {_ms(s.metrics_s)}.\n",
        f"### Equivalence (starting capital {CASH:,.0f})\n",
        _rows(
            (
                "fill",
                "costs",
                "trades ours / peer (open)",
                "entry & exit dates",
                "max Δ trade return",
                "final equity ours",
                "final equity peer",
                "Δ final",
                "max Δ equity curve",
                "Δ final, whole-unit replay",
            ),
            "llrlrrrrrr",
            [
                (
                    e.fill,
                    f"{e.cost_bps:g} bps",
                    f"{e.trades_ours} / {e.trades_peer} ({e.open_ours} / {e.open_peer})",
                    "identical" if e.dates_match else "DIFFER",
                    f"{e.max_trade_return_diff:.1e}",
                    f"{e.final_ours:,.2f}",
                    f"{e.final_peer:,.2f}",
                    _money(e.final_diff),
                    _money(e.max_curve_diff),
                    _money(e.replay_diff),
                )
                for e in r.equivalence
            ],
        ),
        "\nPeer's largest cash left idle at an entry (whole units): "
        + ", ".join(f"{_money(e.max_idle_cash)} at {e.cost_bps:g} bps" for e in r.equivalence if e.fill == "close")
        + ".",
        f"\n### Parameter grid: {len(GRID_FAST)} fast x {len(GRID_SLOW)} slow = {g.combos} backtests, "
        f"{cost:g} bps (median of {RUNS})\n",
        _rows(
            ("what", "backtesting.py", "AlphaSaga (1 process)", "ratio"),
            "lrrr",
            [
                (
                    "peer: Backtest.optimize (process pool, 2 cores)",
                    _ms(g.optimize_s),
                    _ms(g.ours_s),
                    f"{g.optimize_s / g.ours_s:.1f}x faster",
                ),
                (
                    "peer: loop of Backtest.run (1 process)",
                    _ms(g.loop_s),
                    _ms(g.ours_s),
                    f"{g.loop_s / g.ours_s:.1f}x faster",
                ),
            ],
        ),
        f"\nBest by final equity: ours {g.best_ours[0]}/{g.best_ours[1]}, peer {g.best_peer[0]}/{g.best_peer[1]}; "
        f"largest |Δ final equity| over the grid {_money(g.max_final_diff)}, "
        f"{_money(g.max_replay_diff)} against the whole-unit replay"
        + (f"; {g.peer_missing} combinations without a closed trade in the peer" if g.peer_missing else "")
        + ".\n",
        f"### ML training (median of {RUNS})\n",
        _rows(
            ("what", "time", "of which LightGBM fits"),
            "lrr",
            [
                (
                    f"train_walk_forward, {t.rows:,} rows x {t.columns} columns, horizon {HORIZON}, "
                    f"{t.folds} folds + final model ({t.fits} fits)",
                    _ms(t.total_s),
                    f"{_ms(t.fit_s)} ({t.fit_s / t.total_s:.0%})",
                ),
                (f"refused: {t.refusal_rows:,} rows, one short of the minimum", _ms(t.refusal_s), "none"),
            ],
        ),
        f"\n### Look-ahead check, {s.bars:,} bars, sandboxed from a cold process (median of {RUNS})\n",
        _rows(
            (
                "strategy",
                "sandbox",
                "plain run",
                "old check (4 cuts)",
                "every-bar check",
                "every-bar check, runner started ahead",
                "runs",
                "target",
            ),
            "llrrrrrr",
            [
                (
                    c.family,
                    c.sandbox,
                    f"{_ms(c.plain_wall_s)} ({_ms(c.plain_cpu_s)} CPU)",
                    f"{_ms(c.old_wall_s)} ({_ms(c.old_cpu_s)} CPU)",
                    f"{_ms(c.check_wall_s)} ({_ms(c.check_cpu_s)} CPU)",
                    f"{_ms(c.warm_wall_s)} ({_ms(c.warm_cpu_s)} CPU)",
                    str(c.runs),
                    "≤ 1 s",
                )
                for c in r.lookahead
            ],
        ),
    ]
    return "\n".join(out) + "\n"
