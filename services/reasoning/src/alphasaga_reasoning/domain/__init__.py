"""The reasoning service's domain: load and validate market data, measure it, and plan a
hypothesis. Plain functions only (no broker, no database), so the message handler stays
thin and everything here is testable on its own."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the workspace

from alphasaga_contracts.research import Hypothesis, ResearchRequest

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


def form_hypothesis(
    request: ResearchRequest,
    *,
    load: Loader = load_for_request,
    planner: Planner = plan_hypothesis,
) -> tuple[Hypothesis, pd.DataFrame, list[str]]:
    """Load + validate + date-filter the data, measure it and plan a hypothesis.

    Returns the hypothesis, the exact frame it was measured on (store it with
    ``dataset_to_csv_bytes`` so later steps use the same bars) and the non-fatal warnings
    (calendar gaps, GARCH convergence). Raises DataError, MeasurementError or
    PlannerError; all three carry a message meant for the researcher."""
    df, warnings = load(request)
    measurements, measure_warnings = measure_with_warnings(df)
    hypothesis = planner(request, measurements)
    return hypothesis, df, [*warnings, *measure_warnings]
