"""Valid replies for every step kind, for tests that simulate the workers."""

from __future__ import annotations

import datetime as dt
import types
import typing
import uuid
from typing import Any

from alphasaga_contracts import steps as st
from alphasaga_contracts.campaign import RankedTrial
from alphasaga_contracts.research import (
    ArtifactRef,
    FeatureSpec,
    Hypothesis,
    Measurements,
    ModelMetrics,
    SignalSpec,
    Verdict,
)
from alphasaga_contracts.steps import KINDS

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

VERDICT = Verdict(accepted=True, reasons=[])
RANKED = RankedTrial(
    trial=1,
    saga_id=uuid.UUID(int=1),
    dataset="sp500",
    family="trend_following",
    seed=7,
    sharpe=1.0,
    deflated_sharpe=0.5,
    deflated_sharpe_when_run=0.6,
    accepted=True,
)
# A value of each type a kind's result holds, so that any kind's result can be simulated.
SAMPLES: dict[Any, Any] = {
    ArtifactRef: REF,
    Hypothesis: HYPOTHESIS,
    ModelMetrics: METRICS,
    Verdict: VERDICT,
    RankedTrial: RANKED,
    str: "simulated",
    float: 1.0,
    int: 1,
    bool: True,
    dt.date: dt.date(2020, 1, 2),
}


def sample(annotation: Any) -> Any:
    """A valid value for a field of this type: a metric for a dict of floats, one item for a
    list, the first of a union's types that has a sample."""
    if annotation in SAMPLES:
        return SAMPLES[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict:
        return {"sharpe": sample(args[1])}
    if origin is list:
        return [sample(args[0])]
    if origin is typing.Literal:
        return args[0]
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)))
    raise TypeError(f"no sample value for {annotation!r}: add one to tests/support/replies.py SAMPLES")


def success(kind: str, saga_id: uuid.UUID, step: str, attempt: int) -> st.StepSucceeded:
    """The result of a step of ``kind``, its required outputs filled with sample values."""
    result = KINDS[kind].result
    ids = {"saga_id": saga_id, "step": step, "attempt": attempt}
    outputs = {n: sample(f.annotation) for n, f in result.model_fields.items() if n not in ids and f.is_required()}
    reply: st.StepSucceeded = result(**ids, **outputs)
    return reply


def failure(kind: str, saga_id: uuid.UUID, step: str, attempt: int, *, retryable: bool) -> st.StepFailed:
    error_kind = "internal" if retryable else "invalid_input"
    return st.StepFailed(
        saga_id=saga_id,
        step=step,
        kind=kind,
        attempt=attempt,
        error_kind=error_kind,
        error=f"simulated {error_kind} failure",
        retryable=retryable,
    )


def compensated(kind: str, saga_id: uuid.UUID, step: str, attempt: int) -> st.StepCompensated:
    return st.StepCompensated(saga_id=saga_id, step=step, kind=kind, attempt=attempt)


def compensation_failed(kind: str, saga_id: uuid.UUID, step: str, attempt: int, error: str) -> st.CompensationFailed:
    return st.CompensationFailed(saga_id=saga_id, step=step, kind=kind, attempt=attempt, error=error)
