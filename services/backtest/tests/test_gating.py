"""The model may veto a position but never create, enlarge or flip one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphasaga_backtest.domain.gating import gate_signal

INDEX = pd.date_range("2022-01-03", periods=8, freq="D", name="date")


def test_truth_table_at_the_default_threshold() -> None:
    signal = pd.Series([1.0, 1.0, -1.0, -1.0, 0.0, 0.5, 1.0, -1.0], index=INDEX, name="signal")
    proba = pd.Series([0.7, 0.4, 0.3, 0.6, 0.9, 0.8, np.nan, 0.5], index=INDEX)
    gated = gate_signal(signal, proba)
    # long+up kept, long+down vetoed, short+down kept, short+up vetoed, flat stays flat,
    # partial size passes through, no prediction -> flat, exactly 0.5 agrees with nobody
    assert gated.tolist() == [1.0, 0.0, -1.0, 0.0, 0.0, 0.5, 0.0, 0.0]
    assert gated.index.equals(INDEX)
    assert gated.name == "signal"


def test_a_stricter_threshold_needs_more_conviction() -> None:
    signal = pd.Series([1.0, 1.0, -1.0, -1.0], index=INDEX[:4])
    proba = pd.Series([0.55, 0.65, 0.45, 0.35], index=INDEX[:4])
    assert gate_signal(signal, proba, threshold=0.6).tolist() == [0.0, 1.0, 0.0, -1.0]


def test_missing_predictions_and_nan_signals_are_flat() -> None:
    signal = pd.Series([1.0, np.nan, -1.0, 1.0], index=INDEX[:4])
    proba = pd.Series([0.9, 0.9], index=INDEX[2:4])  # the first two bars have no model yet
    assert gate_signal(signal, proba).tolist() == [0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("threshold", [0.49, 1.0, float("nan")])
def test_threshold_must_be_meaningful(threshold: float) -> None:
    signal = pd.Series([1.0], index=INDEX[:1])
    with pytest.raises(ValueError, match="threshold"):
        gate_signal(signal, signal, threshold=threshold)
