"""Performance metrics of a backtest, all finite by construction.

Conventions
-----------
* Periods: bar 0 can never hold a position (there is no earlier decision), so the
  per-period statistics use the returns of bars ``1 .. n-1`` (``n_periods`` of them).
  Equity starts at 1.0 on bar 0, which counts as the first peak for drawdowns.
* Annualisation: 252 bars a year. Volatility and Sharpe use the sample standard
  deviation (``ddof=1``); risk-free rate 0.
* Sortino: mean return over the downside deviation ``sqrt(mean(min(r, 0)^2))`` taken
  over *all* periods (target 0), annualised by ``sqrt(252)``.
* Max drawdown: largest peak-to-trough fall of equity as a positive fraction. Its
  duration is the longest stretch of consecutive bars spent below a previous peak
  (recovered or not), in bars.
* CAGR: ``(equity_end)^(252 / n_periods) - 1``; -1 if the equity is wiped out.
* Win rate and profit factor are per trade (see ``engine`` for what a trade is); the
  profit factor is the sum of winning trade returns over the absolute sum of losing
  ones.
* Exposure: fraction of periods with a non-zero position.
* Turnover: mean ``|Δposition|`` per bar, entry included (1.0 = the whole equity
  traded every bar); ``annual_turnover`` is that times 252.
* Deflated Sharpe ratio (Bailey & López de Prado, 2014): the probability that the true
  Sharpe ratio exceeds the Sharpe ratio the best of ``trials`` skill-less strategies
  would show by luck, allowing for the skew and kurtosis of the returns::

      SR0 = sqrt(V) * ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))
      DSR = Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew*SR + (kurtosis - 1)/4 * SR^2))

  with per-period (not annualised) ``SR``, Pearson kurtosis, ``g`` the Euler-Mascheroni
  constant and ``T`` the number of periods. Both ``N`` (``trials``) and ``V``
  (``trial_sharpe_variance``, per period) are parameters; the formula is
  ``alphasaga_contracts.deflation``'s, which a campaign uses too to deflate every child
  again at its end (hence ``skewness`` and ``kurtosis`` in the metrics). When the trials' Sharpe
  ratios are not known, ``V`` defaults to the sampling variance of a Sharpe estimate
  with no skill, ``1 / (T - 1)``: the trials are assumed independent and skill-less.
  With ``N = 1``, ``SR0 = 0`` and this *is* the probabilistic Sharpe ratio against 0,
  deflating nothing; ``deflated_sharpe_label`` names what was computed.
* Undefined values are reported as 0.0 rather than NaN or infinity: a ratio with a
  zero denominator (zero volatility, no downside, no drawdown, no losing trade), win
  rate with no trades, and the deflated Sharpe ratio with zero volatility or fewer
  than 3 periods. 0.0 never passes a "minimum Sharpe" constraint, which is the safe
  side.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from alphasaga_backtest.domain.engine import BacktestResult
from alphasaga_contracts import deflation

PERIODS_PER_YEAR: Final = deflation.PERIODS_PER_YEAR
EULER_GAMMA: Final = deflation.EULER_GAMMA
_TINY: Final = 1e-12
_MAX_LOG_GROWTH: Final = 700.0  # exp(700) ~ 1e304: keeps CAGR finite

FloatArray = npt.NDArray[np.float64]


def _array(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def annual_volatility(returns: npt.ArrayLike, periods: int = PERIODS_PER_YEAR) -> float:
    """Sample standard deviation of the returns, annualised; 0 with fewer than 2."""
    r = _array(returns)
    if r.size < 2:
        return 0.0
    return float(np.std(r, ddof=1)) * math.sqrt(periods)


def sharpe_ratio(returns: npt.ArrayLike, periods: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sharpe ratio (risk-free 0); 0 when volatility is zero."""
    return _per_period_sharpe(_array(returns)) * math.sqrt(periods)


def sortino_ratio(returns: npt.ArrayLike, periods: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sortino ratio, downside deviation over all periods (target 0)."""
    r = _array(returns)
    if r.size == 0:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if downside < _TINY:
        return 0.0
    return float(np.mean(r)) / downside * math.sqrt(periods)


def equity_curve(returns: npt.ArrayLike) -> FloatArray:
    """Equity starting at 1.0 before the first return (length ``len(returns) + 1``)."""
    return np.concatenate(([1.0], np.cumprod(1.0 + _array(returns))))


def drawdowns(equity: npt.ArrayLike) -> FloatArray:
    """Fall below the running peak at each bar, as a non-negative fraction."""
    e = _array(equity)
    if e.size == 0:
        return e
    peak = np.maximum.accumulate(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        fall = np.where(peak > 0, 1.0 - e / peak, 0.0)
    return np.asarray(np.clip(fall, 0.0, None), dtype=np.float64)


def max_drawdown(equity: npt.ArrayLike) -> tuple[float, int]:
    """Largest drawdown and the longest run of bars under water."""
    fall = drawdowns(equity)
    if fall.size == 0:
        return 0.0, 0
    under = np.concatenate(([False], fall > _TINY, [False]))
    edges = np.flatnonzero(np.diff(under.astype(np.int8)))
    longest = int(np.max(edges[1::2] - edges[0::2])) if edges.size else 0
    return float(fall.max()), longest


def cagr(total_return: float, n_periods: int, periods: int = PERIODS_PER_YEAR) -> float:
    """Compound annual growth rate; -1 if wiped out, 0 for no periods."""
    growth = 1.0 + total_return
    if n_periods <= 0:
        return 0.0
    if growth <= 0.0:
        return -1.0
    log_growth = min(math.log(growth) * periods / n_periods, _MAX_LOG_GROWTH)
    return math.expm1(log_growth)


def expected_max_sharpe(trials: int, n_periods: int, trial_sharpe_variance: float | None = None) -> float:
    """Per-period Sharpe ratio the best of ``trials`` skill-less strategies would show,
    their Sharpe ratios spread with ``trial_sharpe_variance`` (per period; default the
    sampling variance of a skill-less estimate, ``1 / (n_periods - 1)``)."""
    return deflation.expected_max_sharpe(trials, n_periods, trial_sharpe_variance)


def moments(returns: npt.ArrayLike) -> tuple[float, float, float, int]:
    """(per-period Sharpe, skewness, Pearson kurtosis, periods): all the deflated Sharpe
    ratio needs of a return series, so that a campaign can compute it again later."""
    r = _array(returns)
    if r.size < 3 or float(np.std(r, ddof=1)) < _TINY:
        return 0.0, 0.0, 3.0, int(r.size)
    # The biased sample moments, as scipy.stats' skew and kurtosis(fisher=False) give them:
    # numpy's four lines spare every backtest process the import of scipy.stats (about a
    # second of CPU at start-up; docs/benchmarks.md, "the suite's own time").
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    skewness = float(np.mean(centred**3)) / m2**1.5
    pearson_kurtosis = float(np.mean(centred**4)) / m2**2
    return _per_period_sharpe(r), skewness, pearson_kurtosis, int(r.size)


def probabilistic_sharpe_ratio(returns: npt.ArrayLike, benchmark_sharpe: float = 0.0) -> float:
    """P(true per-period Sharpe > ``benchmark_sharpe``), skew and kurtosis adjusted."""
    r = _array(returns)
    if r.size < 3 or float(np.std(r, ddof=1)) < _TINY:
        return 0.0
    sr, g3, g4, n = moments(r)
    return deflation.probabilistic_sharpe(sr, g3, g4, n, benchmark_sharpe)


def deflated_sharpe_ratio(returns: npt.ArrayLike, trials: int = 1, trial_sharpe_variance: float | None = None) -> float:
    """Probabilistic Sharpe ratio against the expected best of ``trials`` lucky ones."""
    r = _array(returns)
    return probabilistic_sharpe_ratio(r, expected_max_sharpe(trials, r.size, trial_sharpe_variance))


annual_to_period_variance = deflation.annual_to_period_variance


def deflated_sharpe_label(trials: int, trial_sharpe_variance: float | None) -> str:
    """What ``deflated_sharpe`` is, in words, for the report."""
    if trials == 1:
        return "probabilistic Sharpe ratio against 0 (one trial: there is nothing to deflate)"
    spread = (
        "skill-less trials (sampling variance 1/(T-1))"
        if trial_sharpe_variance is None
        else f"trials whose annualised Sharpe ratios spread {math.sqrt(trial_sharpe_variance * PERIODS_PER_YEAR):.2f}"
    )
    return f"deflated Sharpe ratio over {trials} trials, against the best of {trials} {spread}"


def compute_metrics(
    result: BacktestResult, *, trials: int = 1, trial_sharpe_variance: float | None = None
) -> dict[str, float]:
    """Every metric of the backtest as a flat, JSON-ready dict of finite numbers."""
    returns = result.returns.to_numpy(dtype=np.float64)[1:]
    positions = result.positions.to_numpy(dtype=np.float64)
    benchmark = result.benchmark_returns.to_numpy(dtype=np.float64)[1:]
    trade_returns = result.trades["return"].to_numpy(dtype=np.float64)
    n_periods = int(returns.size)

    total_return = float(result.equity.iloc[-1]) / float(result.equity.iloc[0]) - 1.0
    growth_rate = cagr(total_return, n_periods)
    drawdown, duration = max_drawdown(result.equity.to_numpy(dtype=np.float64))
    traded = np.abs(np.diff(positions))
    turnover = float(traded.sum()) / n_periods if n_periods else 0.0
    wins = float(trade_returns[trade_returns > 0].sum())
    losses = float(-trade_returns[trade_returns < 0].sum())

    shape = moments(returns)
    metrics: dict[str, float] = {
        "n_periods": n_periods,
        "total_return": total_return,
        "cagr": growth_rate,
        "annual_volatility": annual_volatility(returns),
        "sharpe": sharpe_ratio(returns),
        "sortino": sortino_ratio(returns),
        "max_drawdown": drawdown,
        "max_drawdown_duration": duration,
        "calmar": growth_rate / drawdown if drawdown > _TINY else 0.0,
        "n_trades": int(trade_returns.size),
        "win_rate": float(np.mean(trade_returns > 0)) if trade_returns.size else 0.0,
        "profit_factor": wins / losses if losses > _TINY else 0.0,
        "exposure": float(np.mean(positions[1:] != 0)) if n_periods else 0.0,
        "turnover": turnover,
        "annual_turnover": turnover * PERIODS_PER_YEAR,
        "buy_and_hold_total_return": float(result.benchmark_equity.iloc[-1]) / float(result.benchmark_equity.iloc[0])
        - 1.0,
        "buy_and_hold_sharpe": sharpe_ratio(benchmark),
        "trials": trials,
        "trial_sharpe_variance": (
            (1.0 / (n_periods - 1) if n_periods > 1 else 0.0)
            if trial_sharpe_variance is None
            else trial_sharpe_variance
        ),
        "expected_max_sharpe": expected_max_sharpe(trials, n_periods, trial_sharpe_variance)
        * math.sqrt(PERIODS_PER_YEAR),
        "probabilistic_sharpe": probabilistic_sharpe_ratio(returns),
        # The moments the deflated Sharpe ratio takes, for a campaign to deflate it again.
        "skewness": shape[1],
        "kurtosis": shape[2],
        "deflated_sharpe": deflated_sharpe_ratio(returns, trials, trial_sharpe_variance),
    }
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:  # the conventions above should make this unreachable
        raise ArithmeticError(f"non-finite metrics: {bad}")
    return metrics


def _per_period_sharpe(r: FloatArray) -> float:
    if r.size < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    if sd < _TINY:
        return 0.0
    return float(np.mean(r)) / sd
