"""The rule-based planner: measurements in, a testable trading hypothesis out.

The rules are deliberately simple and written down, so that a reviewer can predict the
hypothesis from the numbers and every choice is visible in the rationale.

Family (objective ``auto``): **trend_following when Hurst > 0.5 and VR(5) > 1**, i.e.
both the long-horizon (Hurst) and the weekly (variance ratio) evidence say returns are
persistent; otherwise **mean_reversion**. Daily equity returns are mildly anti-persistent
at short horizons, so most built-in datasets land on mean reversion. Significance is
reported in the rationale but does not gate the choice: the later walk-forward and
backtest steps are the real test. ``trend`` / ``mean_reversion`` force the family.

Parameters adapt to the recent volatility regime (see ``measure.volatility_regime``):
in a high-volatility regime noise is larger, so windows get longer (fewer whipsaws) and
the z-score entry threshold higher (demand a larger stretch before fading it); in a low
regime, windows get shorter to react sooner. Windows are then shrunk, if needed, so the
longest fits at least four times into the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alphasaga_contracts.research import (
    FeatureSpec,
    Hypothesis,
    Measurements,
    ResearchRequest,
    SignalSpec,
    StrategyFamily,
    VolatilityRegime,
)

from .measure import VR_LAG

Planner = Callable[[ResearchRequest, Measurements], Hypothesis]
"""Any planner: the rule-based one below, the LLM one, or a test double."""

SIGNAL_FOR_FAMILY: dict[StrategyFamily, str] = {
    "trend_following": "ma_crossover",
    "mean_reversion": "zscore_reversion",
}
MAX_LABEL_HORIZON = 20
RSI_WINDOW = 14
MIN_WINDOW = 2


class PlannerError(RuntimeError):
    """A planner could not produce a valid hypothesis; the message says why."""


@dataclass(frozen=True)
class _TrendParams:
    fast: int
    slow: int


@dataclass(frozen=True)
class _ReversionParams:
    window: int
    entry_z: float
    exit_z: float


_TREND: dict[VolatilityRegime, _TrendParams] = {
    "low": _TrendParams(fast=10, slow=50),
    "normal": _TrendParams(fast=20, slow=100),
    "high": _TrendParams(fast=30, slow=150),
}
_REVERSION: dict[VolatilityRegime, _ReversionParams] = {
    "low": _ReversionParams(window=10, entry_z=1.5, exit_z=0.25),
    "normal": _ReversionParams(window=20, entry_z=2.0, exit_z=0.5),
    "high": _ReversionParams(window=30, entry_z=2.5, exit_z=0.5),
}


def choose_family(request: ResearchRequest, m: Measurements) -> StrategyFamily:
    """The family rule (see the module docstring)."""
    if request.objective == "trend":
        return "trend_following"
    if request.objective == "mean_reversion":
        return "mean_reversion"
    return "trend_following" if _evidence_for_trend(m) else "mean_reversion"


def _evidence_for_trend(m: Measurements) -> bool:
    return m.hurst > 0.5 and m.variance_ratio > 1.0


def _window_cap(n_bars: int) -> int:
    """Longest window such that it fits four times into the data."""
    return max(MIN_WINDOW + 1, n_bars // 4)


def _feature(kind: str, window: int) -> FeatureSpec:
    return FeatureSpec.model_validate({"name": f"{kind}_{window}", "kind": kind, "params": {"window": window}})


def _unique(features: list[FeatureSpec]) -> list[FeatureSpec]:
    seen: set[str] = set()
    out: list[FeatureSpec] = []
    for feature in features:
        if feature.name not in seen:
            seen.add(feature.name)
            out.append(feature)
    return out


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _evidence(m: Measurements) -> str:
    significance = "significant" if m.variance_ratio_pvalue < 0.05 else "not significant"
    return (
        f"Measured on {m.n_bars} bars: Hurst {m.hurst:.2f}, "
        f"VR({VR_LAG}) {m.variance_ratio:.2f} (p={m.variance_ratio_pvalue:.2f}, "
        f"{significance} at 5%), lag-1 autocorrelation {m.autocorr_lag1:+.3f}, "
        f"annualised volatility {m.annual_volatility:.1%}, "
        f"GARCH(1,1) persistence {m.garch_persistence:.3f}, "
        f"volatility regime {m.volatility_regime}."
    )


def _why_family(request: ResearchRequest, m: Measurements, family: StrategyFamily) -> str:
    leans = "trend_following" if _evidence_for_trend(m) else "mean_reversion"
    if request.objective != "auto":
        note = "agree" if leans == family else f"lean towards {leans} instead"
        return f"The objective {request.objective!r} forces {family}; the measurements {note}."
    if family == "trend_following":
        return f"Hurst above 0.5 and VR({VR_LAG}) above 1 both indicate persistent returns, so trend following."
    return (
        f"Hurst at or below 0.5 or VR({VR_LAG}) at or below 1 indicates returns that do not persist, so mean reversion."
    )


@dataclass(frozen=True, slots=True)
class _Rules:
    """A family's signal, features, label horizon and rules for one regime and bar count."""

    signal: SignalSpec
    features: list[FeatureSpec]
    horizon: int
    entry: str
    exit: str
    note: str


def plan_hypothesis(request: ResearchRequest, m: Measurements) -> Hypothesis:
    """The rule-based hypothesis for a request and its measurements. Pure and
    deterministic: the same input always gives an identical Hypothesis."""
    family = choose_family(request, m)
    cap = _window_cap(m.n_bars)
    rules = (_trend_rules if family == "trend_following" else _reversion_rules)(m.volatility_regime, cap)
    families = 2 if request.objective == "auto" else 1
    hypothesis = Hypothesis(
        family=family,
        features=_unique(rules.features),
        signal=rules.signal,
        entry_rule=rules.entry,
        exit_rule=rules.exit,
        label_horizon=rules.horizon,
        rationale=" ".join((_evidence(m), _why_family(request, m, family), rules.note)),
        measurements=m,
        planner="rules",
        # Its choice space: each family it could pick times that family's parameter sets.
        candidates=families * len(_TREND if family == "trend_following" else _REVERSION),
    )
    problems = hypothesis_problems(hypothesis, request)
    if problems:  # a bug in the rules above, never the user's fault
        raise PlannerError("rule planner produced an invalid hypothesis: " + "; ".join(problems))
    return hypothesis


def _trend_rules(regime: VolatilityRegime, cap: int) -> _Rules:
    base = _TREND[regime]
    slow = _clip(base.slow, MIN_WINDOW + 1, cap)
    fast = _clip(min(base.fast, slow // 2), MIN_WINDOW, slow - 1)
    horizon = _clip(fast // 2, 1, MAX_LABEL_HORIZON)
    return _Rules(
        signal=SignalSpec(kind="ma_crossover", params={"fast": fast, "slow": slow}),
        features=[
            _feature("sma_ratio", fast),
            _feature("sma_ratio", slow),
            _feature("momentum", slow),
            _feature("volatility", _clip(20, MIN_WINDOW, cap)),
            _feature("rsi", _clip(RSI_WINDOW, MIN_WINDOW, cap)),
        ],
        horizon=horizon,
        entry=(
            f"Go long when the {fast}-day simple moving average of the close crosses above "
            f"the {slow}-day simple moving average."
        ),
        exit=(
            f"Go flat when the {fast}-day simple moving average crosses back below the "
            f"{slow}-day simple moving average."
        ),
        note=(
            f"In a {regime} volatility regime the crossover uses {fast}/{slow}-day averages "
            f"and the label looks {horizon} days ahead."
        ),
    )


def _reversion_rules(regime: VolatilityRegime, cap: int) -> _Rules:
    rev = _REVERSION[regime]
    window = _clip(rev.window, MIN_WINDOW + 1, cap)
    horizon = _clip(window // 4, 1, MAX_LABEL_HORIZON)
    return _Rules(
        signal=SignalSpec(
            kind="zscore_reversion",
            params={"window": window, "entry_z": rev.entry_z, "exit_z": rev.exit_z},
        ),
        features=[
            _feature("zscore", window),
            _feature("rsi", _clip(RSI_WINDOW, MIN_WINDOW, cap)),
            _feature("sma_ratio", window),
            _feature("momentum", _clip(VR_LAG, MIN_WINDOW, cap)),
            _feature("volatility", _clip(20, MIN_WINDOW, cap)),
        ],
        horizon=horizon,
        entry=(
            f"Go long when the close is more than {rev.entry_z:g} standard deviations below "
            f"its {window}-day mean (z-score below -{rev.entry_z:g})."
        ),
        exit=f"Go flat when the {window}-day z-score of the close rises back above -{rev.exit_z:g}.",
        note=(
            f"In a {regime} volatility regime the z-score uses a {window}-day window, "
            f"entering at {rev.entry_z:g} and exiting at {rev.exit_z:g} standard deviations, "
            f"and the label looks {horizon} days ahead."
        ),
    )


def _is_int(value: int | float) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def hypothesis_problems(h: Hypothesis, request: ResearchRequest) -> list[str]:
    """Domain rules the contract's schema cannot express; empty when ``h`` is usable.

    Checked: the signal kind matches the family and the forced objective; signal params
    are present and sane (``ma_crossover``: integers 2 <= fast < slow; ``zscore_reversion``:
    integer window >= 2, entry_z > exit_z >= 0); 1-8 features with unique names and an
    integer ``window`` >= 2; label_horizon <= 20; window lengths below the bar count."""
    problems: list[str] = []
    forced = {"trend": "trend_following", "mean_reversion": "mean_reversion"}
    if request.objective in forced and h.family != forced[request.objective]:
        problems.append(f"objective {request.objective!r} requires family {forced[request.objective]}")
    expected = SIGNAL_FOR_FAMILY[h.family]
    if h.signal.kind != expected:
        problems.append(f"family {h.family} requires signal {expected}, got {h.signal.kind}")
    windows: list[int] = []
    problems += _signal_problems(h.signal, windows)
    problems += _feature_problems(h.features, windows)
    if h.label_horizon > MAX_LABEL_HORIZON:
        problems.append(f"label_horizon {h.label_horizon} exceeds {MAX_LABEL_HORIZON}")
    n_bars = h.measurements.n_bars
    if windows and max(windows) >= n_bars:
        problems.append(f"window {max(windows)} does not fit in {n_bars} bars")
    return problems


def _signal_problems(signal: SignalSpec, windows: list[int]) -> list[str]:
    """What is wrong with the signal's params; its window goes into ``windows``."""
    params = signal.params
    if signal.kind == "ma_crossover":
        fast, slow = params.get("fast"), params.get("slow")
        if fast is None or slow is None or not (_is_int(fast) and _is_int(slow)):
            return ["ma_crossover needs integer params fast and slow"]
        if not MIN_WINDOW <= fast < slow:
            return [f"ma_crossover needs {MIN_WINDOW} <= fast < slow, got {fast}/{slow}"]
        windows.append(int(slow))
        return []
    window, entry_z, exit_z = params.get("window"), params.get("entry_z"), params.get("exit_z")
    if window is None or entry_z is None or exit_z is None or not _is_int(window):
        return ["zscore_reversion needs integer window and numeric entry_z, exit_z"]
    if window < MIN_WINDOW or not entry_z > exit_z >= 0:
        needs = f"zscore_reversion needs window >= {MIN_WINDOW} and entry_z > exit_z >= 0"
        return [f"{needs}, got {window}, {entry_z}, {exit_z}"]
    windows.append(int(window))
    return []


def _feature_problems(features: list[FeatureSpec], windows: list[int]) -> list[str]:
    """What is wrong with the features; their windows go into ``windows``."""
    problems: list[str] = []
    if not 1 <= len(features) <= 8:
        problems.append(f"expected 1-8 features, got {len(features)}")
    names = [f.name for f in features]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"duplicate feature names: {', '.join(duplicates)}")
    for feature in features:
        window = feature.params.get("window")
        if window is None or not _is_int(window) or window < MIN_WINDOW:
            problems.append(f"feature {feature.name} needs an integer window >= {MIN_WINDOW}")
        else:
            windows.append(int(window))
    return problems
