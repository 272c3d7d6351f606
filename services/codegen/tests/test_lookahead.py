"""Look-ahead: a strategy that peeks one bar ahead is caught; the causal twin passes."""

from __future__ import annotations

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from alphasaga_codegen.domain import (
    GeneratedStrategy,
    LookaheadDetected,
    SandboxLimits,
    check_no_lookahead,
    cutoff_positions,
    generate_strategy,
)
from alphasaga_contracts.research import Hypothesis

# Long when the close is above the previous (shift 1) or, peeking, the next (shift -1) close.
PEEKING_TEMPLATE = '''"""Next-bar comparison strategy (shift={shift})."""
import pandas as pd


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({{"ret": bars["close"].pct_change()}}, index=bars.index)


def compute_signal(bars: pd.DataFrame, features: pd.DataFrame) -> pd.Series:
    close = bars["close"]
    return (close.shift({shift}) > close).astype("float64")
'''

# A feature normalised by the whole sample's maximum: the classic silent leak.
FULL_SAMPLE_FEATURE = """import pandas as pd


def compute_features(bars):
    return pd.DataFrame({"scaled": bars["close"] / bars["close"].max()}, index=bars.index)


def compute_signal(bars, features):
    return pd.Series(0.0, index=bars.index)
"""


def test_cutoffs_are_deterministic_and_in_the_second_half() -> None:
    assert cutoff_positions(500) == [250, 312, 375, 437]
    assert cutoff_positions(5000, 2) == [2500, 3750]
    assert cutoff_positions(9, 20) == sorted(set(cutoff_positions(9, 20)))
    assert all(4 <= t < 9 for t in cutoff_positions(9, 20))
    with pytest.raises(ValueError):
        cutoff_positions(5)


def test_peeking_one_bar_ahead_is_detected(bars: pd.DataFrame, limits: SandboxLimits) -> None:
    close = bars["close"]
    positions = cutoff_positions(len(bars))
    # The peek shows at a cut only when the next close is higher; make sure one is.
    assert any(close.iloc[t] > close.iloc[t - 1] for t in positions)
    with pytest.raises(LookaheadDetected) as caught:
        check_no_lookahead(PEEKING_TEMPLATE.format(shift=-1), bars, limits=limits)
    assert caught.value.column == "signal"
    assert caught.value.first_mismatch_date == caught.value.cutoff_date  # the last visible bar
    assert caught.value.cutoff_date in {bars.index[t - 1] for t in positions}


def test_the_same_strategy_without_the_peek_passes(bars: pd.DataFrame, limits: SandboxLimits) -> None:
    report = check_no_lookahead(PEEKING_TEMPLATE.format(shift=1), bars, limits=limits)
    assert report.cutoff_positions == (250, 312, 375, 437)
    assert report.cutoff_dates == tuple(bars.index[t - 1] for t in report.cutoff_positions)
    assert report.columns == ("ret", "signal")
    assert report.values_compared == 2 * sum(report.cutoff_positions)
    assert report.sandbox.frame.index.equals(bars.index)


def test_a_feature_scaled_by_the_full_sample_is_detected(bars: pd.DataFrame, limits: SandboxLimits) -> None:
    with pytest.raises(LookaheadDetected) as caught:
        check_no_lookahead(FULL_SAMPLE_FEATURE, bars, limits=limits, cutoffs=2)
    assert caught.value.column == "scaled"
    assert caught.value.first_mismatch_date == bars.index[0]


@pytest.mark.parametrize("fixture", ["trend_hypothesis", "reversion_hypothesis"])
def test_generate_strategy_renders_runs_and_proves_causality(
    fixture: str, bars: pd.DataFrame, limits: SandboxLimits, request: pytest.FixtureRequest
) -> None:
    h: Hypothesis = request.getfixturevalue(fixture)
    generated = generate_strategy(h, bars, limits)
    assert isinstance(generated, GeneratedStrategy)
    assert generated.source.startswith('"""')
    frame = generated.signals_frame
    assert frame is generated.sandbox.frame is generated.lookahead_report.sandbox.frame
    assert list(frame.columns) == [f.name for f in h.features] + ["signal"]
    assert frame["signal"].between(-1.0, 1.0).all()
    assert generated.lookahead_report.values_compared > 0
