"""Choosing between backtests of the same strategy gated by different models: the one with
the higher deflated Sharpe ratio on the out-of-sample period, or on the whole period when
the request held no bars out (every candidate then lacks the out-of-sample figure). A
candidate whose figure is not a number never wins; ties go to the first in item order."""

from __future__ import annotations

import math
from collections.abc import Mapping

OUT_OF_SAMPLE = "out_of_sample.deflated_sharpe"
WHOLE_PERIOD = "deflated_sharpe"


class SelectionError(ValueError):
    """The candidates cannot be compared."""


def criterion_of(candidates: Mapping[str, Mapping[str, float]]) -> str:
    held_out = [OUT_OF_SAMPLE in m for m in candidates.values()]
    if all(held_out):
        return OUT_OF_SAMPLE
    if any(held_out):
        raise SelectionError("some backtests have an out-of-sample period and some do not: not comparable")
    if not all(WHOLE_PERIOD in m for m in candidates.values()):
        raise SelectionError(f"a backtest reports no {WHOLE_PERIOD}")
    return WHOLE_PERIOD


def select(candidates: Mapping[str, Mapping[str, float]]) -> tuple[str, str, dict[str, float]]:
    """(the chosen item, the criterion, each item's value of it)."""
    if not candidates:
        raise SelectionError("no backtest to choose from")
    criterion = criterion_of(candidates)
    compared = {item: float(metrics[criterion]) for item, metrics in sorted(candidates.items())}
    ranked = [item for item in compared if not math.isnan(compared[item])]
    if not ranked:
        raise SelectionError(f"no backtest has a {criterion} that is a number")
    best = max(ranked, key=lambda item: compared[item])  # max keeps the first of equals
    return best, criterion, compared
