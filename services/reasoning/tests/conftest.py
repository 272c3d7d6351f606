"""Shared fixtures for the reasoning domain tests: small synthetic OHLCV files."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

BarsFactory = Callable[..., pd.DataFrame]


def _bars(n: int = 80, seed: int = 3, start: str = "2020-01-01") -> pd.DataFrame:
    """A valid raw frame (date column, lower-case OHLCV) of ``n`` business days."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.003, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    return pd.DataFrame(
        {
            "date": pd.bdate_range(start, periods=n).strftime("%Y-%m-%d"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(1_000, 10_000, n).astype(float),
        }
    )


@pytest.fixture
def make_bars() -> BarsFactory:
    return _bars
