"""Valid replies for every step, for tests that simulate the workers."""

from __future__ import annotations

import uuid
from typing import Any

from alphasaga_contracts import steps as st
from alphasaga_contracts.research import (
    ArtifactRef,
    FeatureSpec,
    Hypothesis,
    Measurements,
    ModelMetrics,
    SignalSpec,
    Verdict,
)

REF = ArtifactRef(sha256="a" * 64, kind="x", media_type="application/json", size=1)
HYPOTHESIS = Hypothesis(
    family="trend_following",
    features=[FeatureSpec(name="mom_20", kind="momentum", params={"window": 20})],
    signal=SignalSpec(kind="ma_crossover", params={"fast": 10, "slow": 50}),
    entry_rule="fast above slow",
    exit_rule="fast below slow",
    label_horizon=5,
    rationale="simulated",
    measurements=Measurements(
        n_bars=100,
        hurst=0.6,
        variance_ratio=1.1,
        variance_ratio_pvalue=0.04,
        autocorr_lag1=0.05,
        annual_volatility=0.2,
        garch_persistence=0.95,
        volatility_regime="normal",
    ),
)
METRICS = ModelMetrics(
    auc=0.5, accuracy=0.5, log_loss=0.69, baseline_accuracy=0.5, baseline_log_loss=0.69, n_splits=5, n_predictions=100
)

SUCCESS: dict[str, Any] = {
    "reasoning": lambda c: st.HypothesisFormed(**c, hypothesis=HYPOTHESIS, dataset=REF),
    "codegen": lambda c: st.StrategyGenerated(**c, code=REF, signals=REF, sandbox="rlimits"),
    "ml": lambda c: st.ModelTrained(**c, model=REF, predictions=REF, model_metrics=METRICS),
    "backtest": lambda c: st.BacktestCompleted(
        **c, report=REF, chart=REF, metrics={"sharpe": 1.0}, verdict=Verdict(accepted=True, reasons=[])
    ),
}
FAILED = {
    "reasoning": st.HypothesisFailed,
    "codegen": st.StrategyFailed,
    "ml": st.TrainingFailed,
    "backtest": st.BacktestFailed,
}
COMPENSATED = {
    "reasoning": st.HypothesisCompensated,
    "codegen": st.StrategyCompensated,
    "ml": st.ModelCompensated,
    "backtest": st.BacktestCompensated,
}
COMPENSATION_FAILED = {
    "reasoning": st.HypothesisCompensationFailed,
    "codegen": st.StrategyCompensationFailed,
    "ml": st.ModelCompensationFailed,
    "backtest": st.BacktestCompensationFailed,
}


def success(service: str, saga_id: uuid.UUID, step: str, attempt: int) -> st.StepSucceeded:
    reply: st.StepSucceeded = SUCCESS[service]({"saga_id": saga_id, "step": step, "attempt": attempt})
    return reply


def failure(service: str, saga_id: uuid.UUID, step: str, attempt: int, *, retryable: bool) -> st.StepFailed:
    kind = "internal" if retryable else "invalid_input"
    return FAILED[service](
        saga_id=saga_id,
        step=step,
        attempt=attempt,
        error_kind=kind,
        error=f"simulated {kind} failure",
        retryable=retryable,
    )
