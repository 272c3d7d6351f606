"""Look-ahead: peeks at the start, in the middle and at the end of the data are caught
at the bars they happen; the causal twin and the rendered templates pass."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from alphasaga_codegen.domain import (
    GeneratedStrategy,
    LookaheadDetected,
    Sandbox,
    SandboxLimits,
    check_no_lookahead,
    cut_points,
    generate_strategy,
    resolve_sandbox,
)
from alphasaga_contracts.research import Hypothesis


def strategy(features: str, signal: str = "pd.Series(0.0, index=bars.index)") -> str:
    """A module whose features are ``{"x": <features>}`` and whose signal is ``signal``."""
    return (
        "import numpy as np\nimport pandas as pd\n\n\n"
        "def compute_features(bars):\n"
        "    close = bars['close']\n"
        f"    return pd.DataFrame({{'x': {features}}}, index=bars.index)\n\n\n"
        "def compute_signal(bars, features):\n"
        "    close = bars['close']\n"
        f"    return {signal}\n"
    )


LATE = pd.bdate_range("2015-01-02", periods=500)[400]  # bar 400 of the ``bars`` fixture
CAUSAL = strategy("close.pct_change()", "(close.shift(1) > close).astype('float64')")

# Each peek, with the first bar it spoils, when the check must find exactly that bar
# (a one-bar peek is found at the first cut inside its stretch, not at its first bar).
PEEKS = {
    # The issue's miss at the start: rows 0-28 take row 29's value.
    "bfill on a rolling feature": (strategy("(close / close.rolling(30).mean()).bfill()"), 0),
    # The miss at the end: only the last 100 of 500 bars look ahead.
    "next close, from a late date on": (
        strategy(
            "close.pct_change()",
            f"((close.shift(-1) > close) & (bars.index >= pd.Timestamp('{LATE:%Y-%m-%d}'))).astype('float64')",
        ),
        None,
    ),
    "iloc[-1], the last close": (strategy("close / close.iloc[-1]"), 0),
    "max of the whole sample": (strategy("close / close.max()"), 0),
    # Down days become gaps that interpolate fills from the next up day.
    "interpolate across gaps": (strategy("close.where(close.diff() > 0).interpolate()"), None),
    "next close in a feature": (strategy("close.shift(-1) / close"), 0),
    "length of the data": (strategy("close * 0.0 + len(bars)"), 0),
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One zygote for the module's checks, as codegen keeps one for its jobs."""
    kept = Sandbox(resolve_sandbox(), SandboxLimits(cpu_seconds=10, memory_bytes=768 << 20, wall_seconds=20.0))
    yield kept
    kept.close()


def test_cuts_cover_both_edges_densely_and_the_middle_evenly() -> None:
    cuts = cut_points(500, edge=8, middle=32, truncations=4)
    assert cuts.mirrored[:8] == tuple(range(8))
    assert cuts.mirrored[-8:] == tuple(range(491, 499))
    assert max(b - a for a, b in zip(cuts.mirrored, cuts.mirrored[1:], strict=False)) <= 500 // 32 + 1
    assert cuts.truncated == (124, 249, 374, 498)
    assert cuts == cut_points(500, edge=8, middle=32, truncations=4)  # deterministic
    with pytest.raises(ValueError):
        cut_points(5)


@pytest.mark.parametrize("name", sorted(PEEKS))
def test_each_peek_is_caught_where_it_happens(name: str, bars: pd.DataFrame, sandbox: Sandbox) -> None:
    source, first_bad = PEEKS[name]
    with pytest.raises(LookaheadDetected) as caught:
        check_no_lookahead(source, bars, sandbox=sandbox)
    detected = caught.value
    assert detected.cutoff_date >= detected.first_mismatch_date
    if first_bad is not None:
        assert detected.first_mismatch_date == bars.index[first_bad]
    if name == "next close, from a late date on":
        assert detected.first_mismatch_date >= bars.index[400]
        assert detected.column == "signal"


def test_the_causal_twin_passes_and_every_bar_is_compared(bars: pd.DataFrame, limits: SandboxLimits) -> None:
    report = check_no_lookahead(CAUSAL, bars, limits=limits)  # a sandbox of its own, as a caller without one
    cuts = report.cuts
    assert report.runs == len(cuts.mirrored) + len(cuts.truncated) + 1
    assert max(cuts.mirrored) == len(bars) - 2  # every bar but the final one is compared
    assert report.columns == ("x", "signal")
    assert report.values_compared == 2 * (sum(cuts.mirrored) + sum(cuts.truncated) + report.runs - 1)
    assert report.sandbox.frame.index.equals(bars.index)


@pytest.mark.parametrize("fixture", ["trend_hypothesis", "reversion_hypothesis"])
def test_generate_strategy_renders_runs_and_checks_causality(
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
