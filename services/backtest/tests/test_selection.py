"""Choosing between the backtests of a fan-in: by out-of-sample deflated Sharpe."""

from __future__ import annotations

import math

import pytest

from alphasaga_backtest.domain.selection import OUT_OF_SAMPLE, WHOLE_PERIOD, SelectionError, select


def test_the_higher_out_of_sample_deflated_sharpe_wins_and_every_figure_is_reported() -> None:
    chosen, criterion, compared = select(
        {
            "lightgbm": {OUT_OF_SAMPLE: 0.41, WHOLE_PERIOD: 0.9},
            "linear": {OUT_OF_SAMPLE: 0.57, WHOLE_PERIOD: 0.1},
        }
    )
    assert (chosen, criterion) == ("linear", OUT_OF_SAMPLE)
    assert compared == {"lightgbm": 0.41, "linear": 0.57}


def test_without_a_hold_out_the_whole_period_decides_and_ties_go_to_the_first_item() -> None:
    assert select({"b": {WHOLE_PERIOD: 0.3}, "a": {WHOLE_PERIOD: 0.3}})[:2] == ("a", WHOLE_PERIOD)


def test_a_figure_that_is_not_a_number_never_wins() -> None:
    assert select({"a": {OUT_OF_SAMPLE: math.nan}, "b": {OUT_OF_SAMPLE: -2.0}})[0] == "b"
    with pytest.raises(SelectionError, match="that is a number"):
        select({"a": {OUT_OF_SAMPLE: math.nan}})


@pytest.mark.parametrize(
    ("candidates", "why"),
    [
        ({}, "no backtest"),
        ({"a": {OUT_OF_SAMPLE: 1.0}, "b": {WHOLE_PERIOD: 1.0}}, "not comparable"),
        ({"a": {"sharpe": 1.0}}, "reports no deflated_sharpe"),
    ],
)
def test_candidates_that_cannot_be_compared_are_refused(candidates: dict[str, dict[str, float]], why: str) -> None:
    with pytest.raises(SelectionError, match=why):
        select(candidates)
