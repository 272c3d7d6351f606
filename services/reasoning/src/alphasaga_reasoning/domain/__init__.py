"""The reasoning service's domain: load and validate market data, measure it, and plan a
hypothesis. Plain functions only (no broker, no database), so the message handler stays
thin and everything here is testable on its own."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the workspace

from alphasaga_contracts.research import Hypothesis, Measurements, ResearchRequest

from .llm_planner import LLMConfig, llm_planner, plan_hypothesis_llm
from .marketdata import (
    DEFAULT_MAX_GAP_DAYS,
    DEFAULT_MIN_ROWS,
    DataError,
    dataset_from_csv_bytes,
    dataset_to_csv_bytes,
    filter_dates,
    find_gaps,
    load_builtin,
    load_file,
    load_for_request,
    validate_ohlcv,
)
from .measure import MeasurementError, measure, measure_with_warnings
from .planner import Planner, PlannerError, hypothesis_problems, plan_hypothesis

Loader = Callable[[ResearchRequest], tuple[pd.DataFrame, list[str]]]
"""Any loader: ``load_for_request`` (the default), or a partial of it with other limits."""

__all__ = [
    "DEFAULT_MAX_GAP_DAYS",
    "DEFAULT_MIN_ROWS",
    "DataError",
    "LLMConfig",
    "Loader",
    "MeasurementError",
    "Planner",
    "PlannerError",
    "dataset_from_csv_bytes",
    "dataset_to_csv_bytes",
    "filter_dates",
    "find_gaps",
    "form_hypothesis",
    "hypothesis_problems",
    "in_sample_length",
    "llm_planner",
    "load_builtin",
    "load_file",
    "load_for_request",
    "measure",
    "measure_with_warnings",
    "plan_hypothesis",
    "plan_hypothesis_llm",
    "validate_ohlcv",
]


def in_sample_length(n_bars: int, out_of_sample_fraction: float) -> int:
    """Bars before the hold-out: the last ``round(n * fraction)`` bars are held out."""
    return n_bars - round(n_bars * out_of_sample_fraction)


def form_hypothesis(
    request: ResearchRequest,
    *,
    load: Loader = load_for_request,
    planner: Planner = plan_hypothesis,
    measurer: Callable[[pd.DataFrame], tuple[Measurements, list[str]]] = measure_with_warnings,
) -> tuple[Hypothesis, pd.DataFrame, pd.Timestamp | None, list[str]]:
    """Load + validate + date-filter the data, measure its in-sample part and plan.

    Only the bars before the request's hold-out (``out_of_sample_fraction`` of the
    period, at its end) are measured: the choice of family and windows never sees the
    bars the verdict is taken on. Returns the hypothesis, the whole frame (store it with
    ``dataset_to_csv_bytes`` so later steps use the same bars), the first held-out date
    (None without a hold-out) and the non-fatal warnings (calendar gaps, GARCH
    convergence). Raises DataError, MeasurementError or PlannerError; all three carry a
    message meant for the researcher."""
    df, warnings = load(request)
    split = in_sample_length(len(df), request.out_of_sample_fraction)
    if split < DEFAULT_MIN_ROWS:
        raise DataError(
            f"{split} bar(s) before the held-out {request.out_of_sample_fraction:.0%} of the period; "
            f"at least {DEFAULT_MIN_ROWS} are needed to measure"
        )
    measurements, measure_warnings = measurer(df.iloc[:split])
    hypothesis = planner(request, measurements)
    out_of_sample_start = df.index[split] if split < len(df) else None
    return hypothesis, df, out_of_sample_start, [*warnings, *measure_warnings]
