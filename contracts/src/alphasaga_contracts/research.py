"""The research request and the value objects that travel between the steps."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .text import STRICT, Text

BUILTIN_DATASETS = ("sp500", "nasdaq", "aapl", "ibm", "msft", "goog")
# The sane ranges of a request (issue #23): a value outside them is refused where the
# request enters, never found out by a worker as an overflow. Dates stay inside what
# pandas can hold (1677-2262) with room to spare.
FIRST_DATE, LAST_DATE = dt.date(1900, 1, 1), dt.date(2100, 12, 31)
MAX_TRIALS = 1_000_000
MAX_SEED = 2**31 - 1  # LightGBM takes a 32-bit seed
MAX_PATH_CHARS = 1024
RequestDate = Annotated[
    dt.date | None,
    Field(
        ge=FIRST_DATE,
        le=LAST_DATE,
        description=f"From {FIRST_DATE} to {LAST_DATE}",
        json_schema_extra={"formatMinimum": FIRST_DATE.isoformat(), "formatMaximum": LAST_DATE.isoformat()},
    ),
]

Objective = Literal["trend", "mean_reversion", "auto"]
StrategyFamily = Literal["trend_following", "mean_reversion"]
FeatureKind = Literal["sma_ratio", "momentum", "zscore", "volatility", "rsi"]
SignalKind = Literal["ma_crossover", "zscore_reversion"]
VolatilityRegime = Literal["low", "normal", "high"]
Fill = Literal["close", "next_open"]
ModelKind = Literal["lightgbm", "linear"]
MODEL_KINDS: tuple[ModelKind, ...] = ("lightgbm", "linear")


class Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, **STRICT)


class Constraints(Value):
    max_drawdown: float = Field(0.35, gt=0, le=1, description="Largest acceptable peak-to-trough loss, as a fraction")
    min_sharpe: float = Field(0.3, ge=-10, le=10, description="Smallest acceptable annualised Sharpe ratio")


class ResearchRequest(Value):
    """What a researcher asks for. Exactly one of ``dataset`` or ``data_path``."""

    dataset: Text | None = Field(
        None,
        max_length=64,
        description=f"A built-in dataset: {', '.join(BUILTIN_DATASETS)}",
        examples=list(BUILTIN_DATASETS),
    )
    data_path: Text | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description="A CSV or Parquet file with date, open, high, low, close[, volume], inside the server's data "
        "directory (over HTTP: admins only)",
    )
    start: RequestDate = None
    end: RequestDate = None
    objective: Objective = "auto"
    constraints: Constraints = Constraints()
    commission_bps: float = Field(5.0, ge=0, le=1000)
    slippage_bps: float = Field(2.0, ge=0, le=1000)
    trials: int = Field(1, ge=1, le=MAX_TRIALS, description="Strategies tried so far, for the deflated Sharpe ratio")
    trial_sharpe_std: float | None = Field(
        None,
        gt=0,
        le=10,
        description="Spread (standard deviation) of the trials' annualised Sharpe ratios, for the deflated "
        "Sharpe ratio; unset: that of skill-less trials, the sampling spread of a Sharpe estimate",
    )
    out_of_sample_fraction: float = Field(
        0.3,
        ge=0,
        le=0.9,
        description="Share of the period, at its end, held out: reasoning measures and chooses on the rest, "
        "and the verdict is taken on it (0: no hold-out, the verdict is on the whole period)",
    )
    fill: Fill = Field(
        "close",
        description="close: a decision at a bar's close fills at that close (returns from the next bar); "
        "next_open: it fills at the next bar's open",
    )
    seed: int = Field(7, ge=0, le=MAX_SEED)
    models: list[ModelKind] = Field(
        default_factory=lambda: list(MODEL_KINDS),
        min_length=1,
        max_length=2,
        description="The model kinds a workflow that fans out over models trains side by side (research v2); "
        "research v1 trains lightgbm only",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ResearchRequest:
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models repeat: {self.models}")
        if (self.dataset is None) == (self.data_path is None):
            raise ValueError("give exactly one of dataset or data_path")
        if self.dataset is not None and self.dataset not in BUILTIN_DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; built-in: {', '.join(BUILTIN_DATASETS)}")
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class ArtifactRef(Value):
    """A stored blob, addressed by the SHA-256 of its content."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: str = Field(description="dataset, hypothesis, code, signals, model, predictions, report, chart")
    media_type: str
    size: int = Field(ge=0)


class Measurements(Value):
    """Properties of the data that the hypothesis rests on."""

    n_bars: int
    hurst: float
    variance_ratio: float
    variance_ratio_pvalue: float
    autocorr_lag1: float
    annual_volatility: float
    garch_persistence: float
    volatility_regime: VolatilityRegime


# A window, a threshold or a horizon, chosen by a planner, not by a request. Not yet held
# to finite values: codegen's own refusal of a non-finite parameter is tested by building
# one (services/codegen/tests/test_render.py).
Param = int | Annotated[float, Field(allow_inf_nan=True)]


class FeatureSpec(Value):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: FeatureKind
    params: dict[str, Param] = {}


class SignalSpec(Value):
    kind: SignalKind
    params: dict[str, Param] = {}


class Hypothesis(Value):
    family: StrategyFamily
    features: list[FeatureSpec] = Field(min_length=1)
    signal: SignalSpec
    entry_rule: str
    exit_rule: str
    label_horizon: int = Field(ge=1, le=60)
    rationale: str
    measurements: Measurements
    planner: Literal["rules", "llm"] = "rules"
    candidates: int = Field(
        1,
        ge=1,
        description="Hypotheses the planner chose this one from; the deflated Sharpe ratio counts them as trials",
    )


class ModelMetrics(Value):
    auc: float
    accuracy: float
    log_loss: float
    baseline_accuracy: float
    baseline_log_loss: float
    n_splits: int
    n_predictions: int
    feature_importance: dict[str, float] = {}


class Verdict(Value):
    accepted: bool
    reasons: list[str] = Field(description="The constraints that failed; empty when accepted")
    period: Literal["full", "out_of_sample"] = Field("full", description="The bars the verdict was taken on")
    start: dt.date | None = Field(None, description="First bar of that period")
    end: dt.date | None = Field(None, description="Last bar of that period")
    sandbox: str | None = Field(None, description="The sandbox the strategy code ran in, e.g. bubblewrap+seccomp")
