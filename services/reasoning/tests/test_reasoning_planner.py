"""The rule-based planner and the form_hypothesis pipeline."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from alphasaga_contracts.research import (
    FeatureSpec,
    Hypothesis,
    Measurements,
    ResearchRequest,
    SignalSpec,
    VolatilityRegime,
)
from alphasaga_reasoning.domain import (
    DataError,
    PlannerError,
    form_hypothesis,
    hypothesis_problems,
    in_sample_length,
    load_for_request,
    plan_hypothesis,
)
from alphasaga_reasoning.domain.planner import choose_family

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _m(
    hurst: float = 0.54,
    vr: float = 1.08,
    p: float = 0.03,
    regime: VolatilityRegime = "normal",
    n_bars: int = 2500,
) -> Measurements:
    return Measurements(
        n_bars=n_bars,
        hurst=hurst,
        variance_ratio=vr,
        variance_ratio_pvalue=p,
        autocorr_lag1=0.021,
        annual_volatility=0.187,
        garch_persistence=0.981,
        volatility_regime=regime,
    )


def _request(objective: str = "auto") -> ResearchRequest:
    return ResearchRequest.model_validate({"dataset": "sp500", "objective": objective})


TRENDY = _m(hurst=0.56, vr=1.1)
REVERTING = _m(hurst=0.44, vr=0.9)


def test_plan_is_deterministic() -> None:
    first = plan_hypothesis(_request(), TRENDY)
    second = plan_hypothesis(_request(), TRENDY)
    assert first == second
    assert first.model_dump_json() == second.model_dump_json()


@pytest.mark.parametrize(
    ("hurst", "vr", "family"),
    [
        (0.56, 1.10, "trend_following"),
        (0.56, 0.95, "mean_reversion"),
        (0.45, 1.10, "mean_reversion"),
        (0.45, 0.90, "mean_reversion"),
        (0.50, 1.10, "mean_reversion"),  # the rule is strict: Hurst must exceed 0.5
    ],
)
def test_auto_rule(hurst: float, vr: float, family: str) -> None:
    h = plan_hypothesis(_request(), _m(hurst=hurst, vr=vr))
    assert h.family == family
    assert h.signal.kind == ("ma_crossover" if family == "trend_following" else "zscore_reversion")


@pytest.mark.parametrize("m", [TRENDY, REVERTING], ids=["trendy", "reverting"])
def test_forced_objectives_win_over_measurements(m: Measurements) -> None:
    trend = plan_hypothesis(_request("trend"), m)
    reversion = plan_hypothesis(_request("mean_reversion"), m)
    assert trend.family == "trend_following" and trend.signal.kind == "ma_crossover"
    assert reversion.family == "mean_reversion" and reversion.signal.kind == "zscore_reversion"
    assert "forces" in trend.rationale and "forces" in reversion.rationale


def test_forced_objective_against_the_data_says_so() -> None:
    h = plan_hypothesis(_request("trend"), REVERTING)
    assert "lean towards mean_reversion instead" in h.rationale
    assert "agree" in plan_hypothesis(_request("trend"), TRENDY).rationale


def test_rationale_cites_the_numbers() -> None:
    h = plan_hypothesis(_request(), _m(hurst=0.5412, vr=1.0849, p=0.0312))
    assert "Hurst 0.54, VR(5) 1.08 (p=0.03, significant at 5%)" in h.rationale
    assert "annualised volatility 18.7%" in h.rationale
    assert "GARCH(1,1) persistence 0.981" in h.rationale
    assert "volatility regime normal" in h.rationale


@pytest.mark.parametrize("objective", ["auto", "trend", "mean_reversion"])
@pytest.mark.parametrize("regime", ["low", "normal", "high"])
@pytest.mark.parametrize("n_bars", [60, 250, 5031])
def test_every_plan_obeys_the_domain_rules(objective: str, regime: VolatilityRegime, n_bars: int) -> None:
    request = _request(objective)
    h = plan_hypothesis(request, _m(regime=regime, n_bars=n_bars))
    assert hypothesis_problems(h, request) == []
    assert 3 <= len(h.features) <= 5
    names = [f.name for f in h.features]
    assert len(set(names)) == len(names)
    assert all(NAME.match(name) for name in names)
    for feature in h.features:
        window = feature.params["window"]
        assert isinstance(window, int) and 2 <= window < n_bars // 2
    assert 1 <= h.label_horizon <= 20
    assert h.planner == "rules"
    assert h.entry_rule.endswith(".") and h.exit_rule.endswith(".")


def test_trend_windows_lengthen_with_volatility() -> None:
    slow = {
        regime: plan_hypothesis(_request(), _m(hurst=0.6, vr=1.2, regime=regime)).signal.params["slow"]
        for regime in ("low", "normal", "high")
    }
    assert slow["low"] < slow["normal"] < slow["high"]


def test_reversion_threshold_rises_with_volatility() -> None:
    entry = {
        regime: plan_hypothesis(_request(), _m(hurst=0.4, vr=0.9, regime=regime)).signal.params["entry_z"]
        for regime in ("low", "normal", "high")
    }
    assert entry["low"] < entry["normal"] < entry["high"]


def test_windows_shrink_to_fit_short_data() -> None:
    h = plan_hypothesis(_request("trend"), _m(regime="high", n_bars=60))
    assert h.signal.params == {"fast": 7, "slow": 15}


def test_choose_family_matches_plan() -> None:
    assert choose_family(_request(), TRENDY) == "trend_following"
    assert choose_family(_request(), REVERTING) == "mean_reversion"


# --------------------------------------------------------------------------- hypothesis_problems


def _broken(**changes: Any) -> Hypothesis:
    base = plan_hypothesis(_request(), TRENDY).model_dump()
    base.update(changes)
    return Hypothesis.model_validate(base)


def test_problems_are_found() -> None:
    request = _request()
    wrong_signal = _broken(signal=SignalSpec(kind="zscore_reversion", params={"window": 20}))
    assert any("requires signal ma_crossover" in p for p in hypothesis_problems(wrong_signal, request))
    inverted = _broken(signal=SignalSpec(kind="ma_crossover", params={"fast": 50, "slow": 20}))
    assert any("fast < slow" in p for p in hypothesis_problems(inverted, request))
    twins = _broken(features=[FeatureSpec(name="a", kind="rsi", params={"window": 14})] * 2)
    assert any("duplicate feature names: a" in p for p in hypothesis_problems(twins, request))
    no_window = _broken(features=[FeatureSpec(name="a", kind="rsi")])
    assert any("integer window" in p for p in hypothesis_problems(no_window, request))
    long_label = _broken(label_horizon=40)
    assert any("label_horizon" in p for p in hypothesis_problems(long_label, request))
    forced = plan_hypothesis(_request(), TRENDY)
    assert any("requires family mean_reversion" in p for p in hypothesis_problems(forced, _request("mean_reversion")))


# --------------------------------------------------------------------------- form_hypothesis


def test_form_hypothesis_on_sp500_decade() -> None:
    request = ResearchRequest(dataset="sp500", start=dt.date(2009, 1, 1), end=dt.date(2018, 12, 31))
    hypothesis, df, held_out, warnings = form_hypothesis(request)
    assert df.index[0] >= pd.Timestamp("2009-01-01")
    assert len(df) == 2516
    assert hypothesis.measurements.n_bars == in_sample_length(2516, 0.3) == 1761  # the hold-out is not measured
    assert held_out == df.index[1761]
    assert hypothesis.planner == "rules"
    assert hypothesis.candidates == 6  # two families, three parameter sets each
    assert warnings == []
    again, _, _, _ = form_hypothesis(request)
    assert again == hypothesis
    whole, _, none, _ = form_hypothesis(request.model_copy(update={"out_of_sample_fraction": 0.0}))
    assert none is None and whole.measurements.n_bars == 2516


def test_the_held_out_bars_cannot_change_the_hypothesis() -> None:
    """Replace the last 30% of the series by noise: the same hypothesis comes out."""
    request = ResearchRequest(dataset="sp500", start=dt.date(2009, 1, 1), end=dt.date(2018, 12, 31))
    real, _ = load_for_request(request)
    split = in_sample_length(len(real), request.out_of_sample_fraction)
    rng = np.random.default_rng(11)
    noise = real.copy()
    tail = real["close"].iloc[split - 1] * np.exp(np.cumsum(rng.normal(0.0, 0.05, len(real) - split)))
    for column in ("open", "high", "low", "close"):
        noise.iloc[split:, noise.columns.get_loc(column)] = tail
    noise.iloc[split:, noise.columns.get_loc("volume")] = 1.0

    original, _, start, _ = form_hypothesis(request, load=lambda r: (real.copy(), []))
    perturbed, _, same_start, _ = form_hypothesis(request, load=lambda r: (noise.copy(), []))
    assert start == same_start == real.index[split]
    assert perturbed == original
    # The noise would have changed it had the hold-out been measured.
    seen, _, _, _ = form_hypothesis(
        request.model_copy(update={"out_of_sample_fraction": 0.0}), load=lambda r: (noise.copy(), [])
    )
    assert seen.measurements != original.measurements


def test_a_forced_family_has_fewer_candidates() -> None:
    assert plan_hypothesis(_request("trend"), TRENDY).candidates == 3


def test_form_hypothesis_passes_warnings_and_uses_given_planner() -> None:
    seen: list[Measurements] = []

    def planner(request: ResearchRequest, m: Measurements) -> Hypothesis:
        seen.append(m)
        return plan_hypothesis(request, m)

    hypothesis, _, _, warnings = form_hypothesis(_request(), planner=planner)
    assert seen == [hypothesis.measurements]
    assert warnings == ["gap of 7 calendar days between 2001-09-10 and 2001-09-17"]


def test_form_hypothesis_propagates_data_errors() -> None:
    def strict(request: ResearchRequest) -> tuple[pd.DataFrame, list[str]]:
        return load_for_request(request, min_rows=10_000)

    with pytest.raises(DataError, match=r"5031 row\(s\) remain.*at least 10000"):
        form_hypothesis(_request(), load=strict)


def test_planner_error_is_a_runtime_error() -> None:
    assert issubclass(PlannerError, RuntimeError)
