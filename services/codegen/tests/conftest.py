"""Shared fixtures: seeded synthetic bars, one hypothesis per family, small limits."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from alphasaga_codegen.domain import SandboxLimits
from alphasaga_contracts.research import FeatureSpec, Hypothesis, Measurements, SignalSpec

N_BARS = 500


def make_bars(n: int = N_BARS, seed: int = 42) -> pd.DataFrame:
    """A geometric random walk on business days, with plausible OHLCV around it."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.012, n)))
    spread = np.abs(rng.normal(0.0, 0.005, n))
    return pd.DataFrame(
        {
            "open": close * (1.0 + rng.normal(0.0, 0.003, n)),
            "high": close * (1.0 + spread),
            "low": close * (1.0 - spread),
            "close": close,
            "volume": rng.integers(100_000, 1_000_000, n).astype("float64"),
        },
        index=pd.bdate_range("2015-01-02", periods=n, name="date"),
    )


def _measurements(hurst: float) -> Measurements:
    return Measurements(
        n_bars=N_BARS,
        hurst=hurst,
        variance_ratio=1.1 if hurst > 0.5 else 0.9,
        variance_ratio_pvalue=0.03,
        autocorr_lag1=0.04 if hurst > 0.5 else -0.06,
        annual_volatility=0.19,
        garch_persistence=0.95,
        volatility_regime="normal",
    )


@pytest.fixture
def bars() -> pd.DataFrame:
    return make_bars()


@pytest.fixture
def trend_hypothesis() -> Hypothesis:
    return Hypothesis(
        family="trend_following",
        features=[
            FeatureSpec(name="sma_ratio_20", kind="sma_ratio", params={"window": 20}),
            FeatureSpec(name="momentum_10", kind="momentum", params={"window": 10}),
            FeatureSpec(name="volatility_20", kind="volatility", params={"window": 20}),
            FeatureSpec(name="rsi_14", kind="rsi"),
        ],
        signal=SignalSpec(kind="ma_crossover", params={"fast": 10, "slow": 40}),
        entry_rule="Go long when the 10-bar average crosses above the 40-bar average.",
        exit_rule="Go flat when it crosses back below.",
        label_horizon=5,
        rationale="Hurst exponent 0.58 and variance ratio 1.1 point to persistent moves.",
        measurements=_measurements(0.58),
    )


@pytest.fixture
def reversion_hypothesis() -> Hypothesis:
    return Hypothesis(
        family="mean_reversion",
        features=[
            FeatureSpec(name="zscore_20", kind="zscore", params={"window": 20}),
            FeatureSpec(name="rsi_5", kind="rsi", params={"window": 5}),
        ],
        signal=SignalSpec(kind="zscore_reversion", params={"window": 20, "entry_z": 1.5, "exit_z": 0.25}),
        entry_rule="Buy when the close is 1.5 standard deviations below its 20-bar mean.",
        exit_rule="Exit once it is back within 0.25 standard deviations.",
        label_horizon=3,
        rationale="Hurst exponent 0.42 and negative lag-1 autocorrelation suggest reversion.",
        measurements=_measurements(0.42),
    )


@pytest.fixture
def limits() -> SandboxLimits:
    """Small but comfortable: pandas needs ~0.3 s of CPU and ~500 MiB of address space."""
    return SandboxLimits(cpu_seconds=10, memory_bytes=768 << 20, wall_seconds=20.0)
