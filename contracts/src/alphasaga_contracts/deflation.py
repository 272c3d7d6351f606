"""The deflated Sharpe ratio (Bailey & López de Prado, 2014) from the moments of a return
series, in one place: the backtest computes it for a saga, and a campaign computes it
again for every child at its end, with the campaign's final count of trials and the
variance of their Sharpe ratios. Pure standard-library arithmetic, so that neither has to
import the other::

    SR0 = sqrt(V) * ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))
    DSR = Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew*SR + (kurtosis - 1)/4 * SR^2))

``SR`` is per period (not annualised), ``kurtosis`` is Pearson's, ``T`` the number of
periods, ``N`` the trials and ``V`` the per-period variance of the trials' Sharpe ratios
(default: the sampling variance of a skill-less estimate, ``1 / (T - 1)``).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Final

PERIODS_PER_YEAR: Final = 252
EULER_GAMMA: Final = 0.5772156649015329
_TINY: Final = 1e-12
_NORMAL: Final = NormalDist()


def expected_max_sharpe(trials: int, n_periods: int, trial_sharpe_variance: float | None = None) -> float:
    """Per-period Sharpe ratio the best of ``trials`` skill-less strategies would show."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if trial_sharpe_variance is not None and not (math.isfinite(trial_sharpe_variance) and trial_sharpe_variance >= 0):
        raise ValueError(f"trial_sharpe_variance must be finite and non-negative, got {trial_sharpe_variance}")
    if trials == 1 or n_periods < 2:
        return 0.0
    variance = 1.0 / (n_periods - 1) if trial_sharpe_variance is None else trial_sharpe_variance
    z_best = _NORMAL.inv_cdf(1.0 - 1.0 / trials)
    z_tail = _NORMAL.inv_cdf(1.0 - 1.0 / (trials * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * z_best + EULER_GAMMA * z_tail)


def probabilistic_sharpe(sharpe: float, skewness: float, kurtosis: float, n_periods: int, benchmark: float) -> float:
    """P(true per-period Sharpe > ``benchmark``) from the per-period ``sharpe`` of
    ``n_periods`` returns with that skewness and (Pearson) kurtosis; 0 with fewer than 3."""
    if n_periods < 3:
        return 0.0
    # sample moments satisfy kurtosis >= skew^2 + 1, so this is >= 0; guard rounding
    spread = max(1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2, _TINY)
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n_periods - 1) / math.sqrt(spread))


def deflated_sharpe(
    sharpe: float,
    skewness: float,
    kurtosis: float,
    n_periods: int,
    trials: int,
    trial_sharpe_variance: float | None = None,
) -> float:
    """The probabilistic Sharpe ratio against the expected best of ``trials`` lucky ones."""
    return probabilistic_sharpe(
        sharpe, skewness, kurtosis, n_periods, expected_max_sharpe(trials, n_periods, trial_sharpe_variance)
    )


def annual_to_period_variance(annual_sharpe_std: float, periods: int = PERIODS_PER_YEAR) -> float:
    """Per-period variance of Sharpe ratios whose annualised spread is ``annual_sharpe_std``."""
    return annual_sharpe_std**2 / periods
