"""Measured properties of a price series: the evidence a hypothesis rests on.

Everything works on daily log returns ``r_t = ln(close_t) - ln(close_{t-1})`` and is
deterministic: no random numbers are drawn, and the GARCH fit starts from arch's fixed
starting values.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the workspace

from alphasaga_contracts.research import Measurements, VolatilityRegime

TRADING_DAYS = 252
VR_LAG = 5
"""Variance-ratio horizon in bars: one trading week, short enough to be estimated well
on a few hundred bars and long enough to aggregate the day-to-day noise."""
REGIME_WINDOW = 63
"""Recent-volatility window in bars: one quarter."""
REGIME_QUANTILES = (0.25, 0.75)

MIN_RETURNS = 32
"""Fewest returns the estimators accept (the Hurst fit needs >= 8 blocks at 3 sizes)."""


class MeasurementError(ValueError):
    """The data cannot be measured (too short, constant prices, failed fit)."""


def log_returns(close: pd.Series | np.ndarray) -> np.ndarray:
    """Daily log returns of a close series."""
    prices = np.asarray(close, dtype=np.float64)
    return np.diff(np.log(prices))


def hurst_exponent(returns: np.ndarray, *, min_blocks: int = 8, sizes: int = 20) -> float:
    """Hurst exponent by the aggregated-variance method on returns.

    Cut the returns into non-overlapping blocks of ``m`` bars and take the variance of
    the block means. For a process with Hurst exponent ``H`` it scales as
    ``Var(mean_m) ~ m^(2H-2)``: independent returns give slope -1 (H = 0.5); persistent,
    trending returns decay more slowly (H > 0.5); anti-persistent, mean-reverting ones
    faster (H < 0.5), down to slope -2 (H = 0) when the price itself is stationary.
    We fit the slope by least squares on ``log m`` against ``log Var`` over up to
    ``sizes`` log-spaced block sizes from 2 to ``n / min_blocks``, weighting each point by
    the inverse standard deviation of its log-variance (``sqrt(v / 2)``) so that the
    noisy largest blocks do not dominate; this halves the estimator's spread.

    Why this method rather than classic rescaled range: R/S is biased upward in short
    samples (white noise reads ~0.55-0.6 without the Anis-Lloyd correction), whereas the
    variance of block means is unbiased under the null. The remaining bias, the mean of
    ``log`` of a sample variance with ``k - 1`` degrees of freedom (Jensen), is removed
    with its Gaussian value ``-1/v - 1/(3 v^2)`` (``v = k - 1``), which matters at the
    largest block sizes where only a few blocks remain.
    """
    values = np.asarray(returns, dtype=np.float64)
    n = values.size
    largest = n // min_blocks
    if largest < 4:
        raise MeasurementError(f"Hurst exponent needs at least {4 * min_blocks} returns, got {n}")
    block_sizes = np.unique(np.geomspace(2, largest, num=sizes).astype(int))
    log_m: list[float] = []
    log_var: list[float] = []
    weights: list[float] = []
    for m in block_sizes:
        k = n // m
        # Align blocks to the end: the most recent data always counts.
        means = values[n - k * m :].reshape(k, m).mean(axis=1)
        variance = float(means.var(ddof=1))
        if variance <= 0.0:
            raise MeasurementError("Hurst exponent: returns have zero variance")
        dof = k - 1
        log_m.append(math.log(m))
        log_var.append(math.log(variance) + 1.0 / dof + 1.0 / (3.0 * dof * dof))
        weights.append(math.sqrt(dof / 2.0))
    slope = float(np.polyfit(np.array(log_m), np.array(log_var), 1, w=np.array(weights))[0])
    return 1.0 + slope / 2.0


def variance_ratio(log_prices: np.ndarray, lag: int = VR_LAG) -> tuple[float, float, float]:
    """Lo-MacKinlay (1988) variance ratio ``VR(q)`` with overlapping q-bar returns and
    the heteroskedasticity-robust statistic ``z*(q)``; returns ``(VR, z*, two-sided p)``.

    ``VR(q)`` is the variance of q-bar returns over q times the variance of 1-bar returns
    (both bias-corrected). A random walk gives 1; positive autocorrelation (trend)
    pushes it above 1 and negative (mean reversion) below. The robust variance of
    ``VR - 1`` is ``sum_j (2 (q-j) / q)^2 delta_j`` with
    ``delta_j = sum_t e_t^2 e_{t-j}^2 / (sum_t e_t^2)^2`` (``e`` the demeaned returns) the
    heteroskedasticity-consistent variance of the lag-j autocorrelation, so volatility
    clustering, omnipresent in daily prices, does not fake significance.
    """
    p = np.asarray(log_prices, dtype=np.float64)
    big_t = p.size - 1  # number of returns
    if lag < 2 or big_t <= 2 * lag:
        raise MeasurementError(f"variance ratio at lag {lag} needs more than {2 * lag} returns")
    returns = np.diff(p)
    mu = (p[-1] - p[0]) / big_t
    dev = returns - mu
    sum_sq = float(np.dot(dev, dev))
    if sum_sq <= 0.0:
        raise MeasurementError("variance ratio: returns have zero variance")
    var_1 = sum_sq / (big_t - 1)
    q_dev = p[lag:] - p[:-lag] - lag * mu
    m = lag * (big_t - lag + 1) * (1.0 - lag / big_t)
    var_q = float(np.dot(q_dev, q_dev)) / m
    ratio = var_q / var_1
    dev_sq = dev * dev
    theta = 0.0
    for j in range(1, lag):
        delta = float(np.dot(dev_sq[j:], dev_sq[:-j])) / (sum_sq * sum_sq)
        theta += (2.0 * (lag - j) / lag) ** 2 * delta
    z = (ratio - 1.0) / math.sqrt(theta)
    pvalue = math.erfc(abs(z) / math.sqrt(2.0))
    return ratio, z, pvalue


def autocorrelation(returns: np.ndarray, lag: int = 1) -> float:
    """Sample autocorrelation at ``lag`` (the usual biased estimator, full-sample mean)."""
    dev = np.asarray(returns, dtype=np.float64) - float(np.mean(returns))
    denominator = float(np.dot(dev, dev))
    if denominator <= 0.0:
        raise MeasurementError("autocorrelation: returns have zero variance")
    return float(np.dot(dev[lag:], dev[:-lag])) / denominator


def annual_volatility(returns: np.ndarray) -> float:
    """Standard deviation of daily log returns scaled by sqrt(252)."""
    return float(np.std(returns, ddof=1)) * math.sqrt(TRADING_DAYS)


def garch_persistence(returns: np.ndarray) -> tuple[float, list[str]]:
    """``alpha + beta`` of a GARCH(1,1) with constant mean fitted by arch on percent
    returns: how long a volatility shock lasts (near 1: for months). Returns the value
    and warnings (e.g. the optimiser did not converge; the estimate is still reported)."""
    from arch import arch_model

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = arch_model(np.asarray(returns) * 100.0, vol="GARCH", p=1, q=1)
            result = model.fit(disp="off")
        except Exception as exc:  # arch raises many kinds of numerical errors
            raise MeasurementError(f"GARCH(1,1) fit failed: {type(exc).__name__}: {exc}") from exc
    params = result.params
    persistence = float(params["alpha[1]"] + params["beta[1]"])
    if not math.isfinite(persistence):
        raise MeasurementError("GARCH(1,1) fit gave a non-finite persistence")
    if int(result.convergence_flag) != 0:
        notes.append(
            f"GARCH(1,1) optimiser did not converge (flag {int(result.convergence_flag)}); "
            f"persistence {persistence:.3f} is approximate"
        )
    notes.extend(f"GARCH(1,1): {w.message}" for w in caught if issubclass(w.category, RuntimeWarning))
    return persistence, notes


def volatility_regime(returns: np.ndarray, window: int = REGIME_WINDOW) -> tuple[VolatilityRegime, float, float, float]:
    """Classify the latest volatility against the sample's own history.

    Rule: compute the realised volatility (std of log returns) over every rolling window
    of ``w = min(window, n // 2)`` bars; the latest window is "low" if below the 25th
    percentile of all of them, "high" if above the 75th, else "normal". Relative to the
    series itself, so a quiet stock and a volatile index are each judged by their own
    standard. Returns ``(regime, latest, p25, p75)`` as annualised volatilities.
    """
    values = np.asarray(returns, dtype=np.float64)
    w = min(window, values.size // 2)
    if w < 2:
        raise MeasurementError("volatility regime needs at least 4 returns")
    rolling = pd.Series(values).rolling(w).std(ddof=1).dropna().to_numpy() * math.sqrt(TRADING_DAYS)
    latest = float(rolling[-1])
    low, high = (float(q) for q in np.quantile(rolling, REGIME_QUANTILES))
    regime: VolatilityRegime = "low" if latest < low else "high" if latest > high else "normal"
    return regime, latest, low, high


def measure_with_warnings(df: pd.DataFrame) -> tuple[Measurements, list[str]]:
    """All measurements of a canonical OHLCV frame (see marketdata), plus any warnings."""
    close = df["close"].to_numpy(dtype=np.float64)
    returns = log_returns(close)
    if returns.size < MIN_RETURNS:
        raise MeasurementError(f"need at least {MIN_RETURNS} returns to measure, got {returns.size}")
    if float(np.std(returns)) == 0.0:
        raise MeasurementError("the close price never changes; nothing to measure")
    ratio, _z, pvalue = variance_ratio(np.log(close), VR_LAG)
    persistence, notes = garch_persistence(returns)
    regime, _latest, _low, _high = volatility_regime(returns)
    measurements = Measurements(
        n_bars=len(df),
        hurst=hurst_exponent(returns),
        variance_ratio=ratio,
        variance_ratio_pvalue=pvalue,
        autocorr_lag1=autocorrelation(returns, 1),
        annual_volatility=annual_volatility(returns),
        garch_persistence=persistence,
        volatility_regime=regime,
    )
    return measurements, notes


def measure(df: pd.DataFrame) -> Measurements:
    """All measurements of a canonical OHLCV frame, warnings discarded."""
    return measure_with_warnings(df)[0]
