"""Measurements on synthetic series with known properties, and on real data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from alphasaga_reasoning.domain.marketdata import load_builtin
from alphasaga_reasoning.domain.measure import (
    VR_LAG,
    MeasurementError,
    annual_volatility,
    autocorrelation,
    garch_persistence,
    hurst_exponent,
    measure,
    measure_with_warnings,
    variance_ratio,
    volatility_regime,
)

N = 5000


def _ar1(phi: float, n: int = N, seed: int = 1, sigma: float = 0.01) -> np.ndarray:
    """x_t = phi * x_{t-1} + e_t with Gaussian e."""
    shocks = np.random.default_rng(seed).normal(0.0, sigma, n)
    out = np.empty(n)
    out[0] = shocks[0]
    for t in range(1, n):
        out[t] = phi * out[t - 1] + shocks[t]
    return out


def _frame_from_returns(returns: np.ndarray) -> pd.DataFrame:
    close = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    index = pd.DatetimeIndex(pd.bdate_range("2000-01-03", periods=close.size), name="date")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 0.0}, index=index)


# --------------------------------------------------------------------------- Hurst


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hurst_of_random_walk_is_near_one_half(seed: int) -> None:
    returns = np.random.default_rng(seed).normal(0.0, 0.01, N)
    assert hurst_exponent(returns) == pytest.approx(0.5, abs=0.1)


def test_hurst_of_mean_reverting_ar1_is_clearly_lower() -> None:
    # A stationary AR(1) log price (phi 0.5): returns are strongly anti-persistent.
    returns = np.diff(_ar1(0.5, N + 1, seed=4))
    random_walk = hurst_exponent(np.random.default_rng(4).normal(0.0, 0.01, N))
    reverting = hurst_exponent(returns)
    assert reverting < 0.3
    assert reverting < random_walk - 0.2


def test_hurst_of_persistent_returns_is_above_one_half() -> None:
    assert hurst_exponent(_ar1(0.3, seed=5)) > 0.53


def test_hurst_needs_enough_data() -> None:
    with pytest.raises(MeasurementError, match="at least"):
        hurst_exponent(np.random.default_rng(0).normal(size=20))


# --------------------------------------------------------------------------- variance ratio


def test_variance_ratio_of_random_walk_is_near_one() -> None:
    log_prices = np.cumsum(np.random.default_rng(6).normal(0.0, 0.01, N))
    ratio, z, pvalue = variance_ratio(log_prices, VR_LAG)
    assert ratio == pytest.approx(1.0, abs=0.08)
    assert 0.0 <= pvalue <= 1.0
    assert pvalue == pytest.approx(math.erfc(abs(z) / math.sqrt(2.0)))


def test_variance_ratio_detects_mean_reversion_and_trend() -> None:
    reverting, _, p_reverting = variance_ratio(np.cumsum(_ar1(-0.3, seed=7)))
    trending, _, p_trending = variance_ratio(np.cumsum(_ar1(0.3, seed=7)))
    assert reverting < 0.8 and p_reverting < 0.001
    assert trending > 1.2 and p_trending < 0.001


def test_variance_ratio_matches_arch_on_sp500() -> None:
    # arch's own Lo-MacKinlay implementation (overlapping, debiased, robust) as the oracle.
    from arch.unitroot import VarianceRatio

    log_prices = np.log(load_builtin("sp500")["close"].to_numpy())
    ratio, z, pvalue = variance_ratio(log_prices, 5)
    oracle = VarianceRatio(log_prices, lags=5, robust=True, debiased=True, overlap=True)
    assert ratio == pytest.approx(oracle.vr, rel=1e-9)
    assert z == pytest.approx(oracle.stat, rel=1e-9)
    assert pvalue == pytest.approx(oracle.pvalue, rel=1e-6)


# --------------------------------------------------------------------------- the rest


def test_autocorrelation_and_volatility_of_known_processes() -> None:
    assert autocorrelation(_ar1(0.3, seed=8)) == pytest.approx(0.3, abs=0.05)
    iid = np.random.default_rng(9).normal(0.0, 0.01, N)
    assert autocorrelation(iid) == pytest.approx(0.0, abs=0.05)
    assert annual_volatility(iid) == pytest.approx(0.01 * math.sqrt(252), rel=0.03)


def test_volatility_regime_rule() -> None:
    rng = np.random.default_rng(10)
    calm, wild = rng.normal(0, 0.005, 600), rng.normal(0, 0.03, 600)
    middle = rng.normal(0, 0.012, 600)
    # The latest quarter is judged against all rolling quarters of the sample.
    assert volatility_regime(np.concatenate([calm, wild[:63]]))[0] == "high"
    assert volatility_regime(np.concatenate([wild, calm[:63]]))[0] == "low"
    assert volatility_regime(np.concatenate([calm, wild, middle]))[0] == "normal"
    # Half the sample wild: a wild last quarter is typical, not "high".
    assert volatility_regime(np.concatenate([calm, wild]))[0] == "normal"
    _regime, latest, low, high = volatility_regime(np.concatenate([calm, wild[:63]]))
    assert latest > high > low > 0


def test_garch_persistence_on_sp500_is_high_and_deterministic() -> None:
    returns = np.diff(np.log(load_builtin("sp500")["close"].to_numpy()))
    first, notes = garch_persistence(returns)
    second, _ = garch_persistence(returns)
    assert 0.95 < first < 1.0
    assert first == second
    assert notes == []


def test_measure_sp500() -> None:
    df = load_builtin("sp500")
    m = measure(df)
    assert m.n_bars == 5031
    assert 0.3 < m.hurst < 0.7
    assert m.variance_ratio < 1.0  # daily index returns are mildly anti-persistent
    assert 0.0 <= m.variance_ratio_pvalue <= 1.0
    assert -0.2 < m.autocorr_lag1 < 0.0
    assert 0.1 < m.annual_volatility < 0.3
    assert m.volatility_regime in ("low", "normal", "high")
    assert measure(df) == m  # deterministic
    assert all(math.isfinite(v) for v in m.model_dump().values() if isinstance(v, float))


def test_measure_refuses_constant_and_short_data() -> None:
    with pytest.raises(MeasurementError, match="never changes"):
        measure(_frame_from_returns(np.zeros(100)))
    with pytest.raises(MeasurementError, match="at least"):
        measure(_frame_from_returns(np.full(10, 0.01)))


def test_measure_short_but_valid_series() -> None:
    returns = np.random.default_rng(12).normal(0.0, 0.01, 59)
    m, notes = measure_with_warnings(_frame_from_returns(returns))
    assert m.n_bars == 60
    assert math.isfinite(m.hurst) and math.isfinite(m.garch_persistence)
    assert isinstance(notes, list)
