"""Metrics against numbers worked out by hand, and finiteness in degenerate cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis, norm, skew

from alphasaga_backtest.domain.engine import BacktestResult, run_backtest
from alphasaga_backtest.domain.metrics import (
    annual_to_period_variance,
    cagr,
    compute_metrics,
    deflated_sharpe_label,
    deflated_sharpe_ratio,
    equity_curve,
    expected_max_sharpe,
    max_drawdown,
    moments,
    probabilistic_sharpe_ratio,
    sharpe_ratio,
    sortino_ratio,
)

RETURNS = [0.02, -0.01, 0.03, -0.04, 0.01, 0.02]


def _bars_from_returns(returns: list[float]) -> pd.DataFrame:
    close = 100.0 * np.cumprod([1.0, *(1.0 + np.asarray(returns))])
    index = pd.date_range("2021-01-01", periods=len(close), freq="D", name="date")
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0},
        index=index,
    )


def _backtest(close: list[float], target: list[float], bps: float = 0.0) -> BacktestResult:
    index = pd.date_range("2021-01-01", periods=len(close), freq="D", name="date")
    bars = pd.DataFrame({"close": close}, index=index, dtype=float)
    return run_backtest(bars, pd.Series(target, index=index, dtype=float), commission_bps=bps, slippage_bps=0)


def test_sharpe_by_hand() -> None:
    # mean = 0.03 / 6 = 0.005; deviations 0.015, -0.015, 0.025, -0.045, 0.005, 0.015;
    # squares sum to 0.00335, so the sample variance is 0.00335 / 5 = 0.00067
    expected = 0.005 / math.sqrt(0.00067) * math.sqrt(252)
    assert sharpe_ratio(RETURNS) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(3.0665, abs=1e-4)


def test_sortino_by_hand() -> None:
    # downside: min(r, 0)² = 0.0001 and 0.0016 over all 6 periods -> mean 0.0017 / 6
    expected = 0.005 / math.sqrt(0.0017 / 6) * math.sqrt(252)
    assert sortino_ratio(RETURNS) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(4.7154, abs=1e-4)


def test_max_drawdown_and_duration_by_hand() -> None:
    # equity 1, 1.02, 1.0098, 1.040094, 0.99849024, 1.0084751424, 1.028644645248
    # peak 1.040094 after bar 3; the -4% bar is the trough; still under water at the end
    depth, duration = max_drawdown(equity_curve(RETURNS))
    assert depth == pytest.approx(0.04, rel=1e-12)
    assert duration == 3  # bars 4, 5, 6 (bar 2's one-bar dip is shorter)
    recovered, length = max_drawdown([1.0, 0.9, 0.95, 1.0, 1.1, 1.05])
    assert recovered == pytest.approx(0.1)
    assert length == 2
    assert max_drawdown([1.0, 1.1, 1.2]) == (0.0, 0)


def test_cagr_is_annualised_over_252_periods() -> None:
    assert cagr(0.10, 252) == pytest.approx(0.10)
    assert cagr(0.21, 504) == pytest.approx(0.10)
    assert cagr(-1.5, 252) == -1.0
    assert math.isfinite(cagr(50.0, 1))


def test_probabilistic_sharpe_by_hand() -> None:
    # a two-point series: skew 0 and (Pearson) kurtosis 1, so the adjustment term is 1.
    # mean 0.005, population sd 0.015, sample sd 0.015 * sqrt(100/99):
    # SR = sqrt(0.99) / 3 and z = SR * sqrt(99) = 9.9 / 3 = 3.3
    returns = [0.02, -0.01] * 50
    assert probabilistic_sharpe_ratio(returns) == pytest.approx(norm.cdf(3.3), rel=1e-12)
    assert deflated_sharpe_ratio(returns, trials=1) == pytest.approx(norm.cdf(3.3), rel=1e-12)


def test_expected_max_sharpe_matches_the_expected_maximum_of_normals() -> None:
    assert expected_max_sharpe(1, 1000) == 0.0
    # E[max of 100 standard normals] = 2.5076; the approximation gives about 2.53
    scaled = expected_max_sharpe(100, 1001) * math.sqrt(1000)
    assert scaled == pytest.approx(2.5076, abs=0.05)
    with pytest.raises(ValueError, match="trials"):
        expected_max_sharpe(0, 10)


def test_deflated_sharpe_falls_as_trials_grow() -> None:
    rng = np.random.default_rng(2)
    returns = rng.normal(0.0008, 0.01, 1000)
    values = [deflated_sharpe_ratio(returns, trials) for trials in (1, 10, 100, 1000)]
    assert values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(probabilistic_sharpe_ratio(returns, 0.0))
    assert all(0.0 <= value <= 1.0 for value in values)
    assert values[0] > 0.9 > values[-1]


def test_compute_metrics_on_the_hand_series() -> None:
    bars = _bars_from_returns(RETURNS)
    target = pd.Series(1.0, index=bars.index)
    result = run_backtest(bars, target, commission_bps=0, slippage_bps=0)
    metrics = compute_metrics(result, trials=1)
    assert metrics["n_periods"] == 6
    assert metrics["sharpe"] == pytest.approx(0.005 / math.sqrt(0.00067) * math.sqrt(252))
    assert metrics["sortino"] == pytest.approx(0.005 / math.sqrt(0.0017 / 6) * math.sqrt(252))
    assert metrics["annual_volatility"] == pytest.approx(math.sqrt(0.00067 * 252))
    assert metrics["max_drawdown"] == pytest.approx(0.04)
    assert metrics["max_drawdown_duration"] == 3
    total = 1.02 * 0.99 * 1.03 * 0.96 * 1.01 * 1.02 - 1
    assert metrics["total_return"] == pytest.approx(total)
    assert metrics["buy_and_hold_total_return"] == pytest.approx(total)
    assert metrics["buy_and_hold_sharpe"] == pytest.approx(metrics["sharpe"])
    assert metrics["cagr"] == pytest.approx((1 + total) ** (252 / 6) - 1)
    assert metrics["calmar"] == pytest.approx(metrics["cagr"] / 0.04)
    assert metrics["exposure"] == 1.0
    assert metrics["turnover"] == pytest.approx(1 / 6)  # one entry over six bars
    assert metrics["annual_turnover"] == pytest.approx(252 / 6)
    assert metrics["expected_max_sharpe"] == 0.0


def test_trade_statistics_by_hand() -> None:
    # long over +20%, flat, long over -10%, flat
    result = _backtest([100, 120, 120, 108, 108], [1, 0, 1, 0, 0])
    metrics = compute_metrics(result)
    assert metrics["n_trades"] == 2
    assert metrics["win_rate"] == 0.5
    assert metrics["profit_factor"] == pytest.approx(0.20 / 0.10)
    assert metrics["exposure"] == 0.5  # 2 of 4 periods
    assert metrics["turnover"] == pytest.approx(4 / 4)  # in, out, in, out


def test_no_trades_gives_finite_zeros() -> None:
    result = _backtest([100, 101, 99, 102, 103], [0, 0, 0, 0, 0], bps=5)
    metrics = compute_metrics(result, trials=20)
    assert all(math.isfinite(value) for value in metrics.values())
    for name in (
        "total_return",
        "cagr",
        "annual_volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "calmar",
        "win_rate",
        "profit_factor",
        "exposure",
        "turnover",
        "deflated_sharpe",
    ):
        assert metrics[name] == 0.0, name
    assert metrics["n_trades"] == 0
    assert metrics["buy_and_hold_total_return"] == pytest.approx(0.03)


def test_flat_prices_and_only_winners_stay_finite() -> None:
    flat = compute_metrics(_backtest([100.0] * 10, [1.0] * 10))
    assert all(math.isfinite(value) for value in flat.values())
    assert flat["buy_and_hold_sharpe"] == 0.0 and flat["sharpe"] == 0.0
    rising = compute_metrics(_backtest([100, 101, 102, 103, 104, 105], [1, 1, 1, 1, 1, 1]))
    assert all(math.isfinite(value) for value in rising.values())
    assert rising["sortino"] == 0.0  # no downside: undefined, reported as 0
    assert rising["profit_factor"] == 0.0  # no losing trade: undefined, reported as 0
    assert rising["win_rate"] == 1.0
    assert rising["calmar"] == 0.0  # no drawdown


def test_metrics_on_a_long_random_backtest_are_in_range() -> None:
    rng = np.random.default_rng(4)
    n = 2000
    close = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.012, n)))
    target = np.repeat(rng.choice([-1.0, 0.0, 1.0], size=n // 10), 10)
    metrics = compute_metrics(_backtest(list(close), list(target), bps=7), trials=5)
    assert all(math.isfinite(value) for value in metrics.values())
    for name in ("win_rate", "exposure", "deflated_sharpe", "max_drawdown"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["expected_max_sharpe"] > 0
    assert metrics["trials"] == 5


def test_the_trials_sharpe_variance_is_a_real_parameter() -> None:
    rng = np.random.default_rng(4)
    returns = rng.normal(0.0003, 0.01, 1260)  # five years
    skill_less = deflated_sharpe_ratio(returns, 10)
    # The example: trial Sharpes spread 0.5 annualised deflate far more.
    realistic = deflated_sharpe_ratio(returns, 10, annual_to_period_variance(0.5))
    assert realistic < skill_less
    assert deflated_sharpe_ratio(returns, 1, annual_to_period_variance(0.5)) == probabilistic_sharpe_ratio(returns)
    assert expected_max_sharpe(10, 1260, 0.0) == 0.0
    with pytest.raises(ValueError, match="variance"):
        expected_max_sharpe(10, 1260, -1.0)


def test_the_label_says_what_was_computed() -> None:
    assert deflated_sharpe_label(1, None).startswith("probabilistic Sharpe ratio")
    assert "over 6 trials" in deflated_sharpe_label(6, None) and "skill-less" in deflated_sharpe_label(6, None)
    assert "spread 0.50" in deflated_sharpe_label(6, annual_to_period_variance(0.5))


@pytest.mark.parametrize("seed", range(5))
def test_the_moments_are_scipys_biased_skew_and_pearson_kurtosis(seed: int) -> None:
    # metrics computes them with numpy (no scipy.stats import in the service): scipy is the reference.
    returns = np.random.default_rng(seed).standard_t(df=3 + seed, size=250) * 0.01
    _, skewness, pearson_kurtosis, periods = moments(returns)
    assert periods == 250
    assert skewness == pytest.approx(float(skew(returns, bias=True)), rel=1e-9, abs=1e-12)
    assert pearson_kurtosis == pytest.approx(float(kurtosis(returns, fisher=False, bias=True)), rel=1e-9)
