"""The verdict names each broken constraint with its numbers."""

from __future__ import annotations

import math

import pytest

from alphasaga_backtest.domain.verdict import judge
from alphasaga_contracts.research import Constraints

LIMITS = Constraints(max_drawdown=0.25, min_sharpe=0.5)


def test_within_limits_is_accepted() -> None:
    verdict = judge({"max_drawdown": 0.20, "sharpe": 0.9}, LIMITS)
    assert verdict.accepted
    assert verdict.reasons == []


def test_limits_are_inclusive() -> None:
    assert judge({"max_drawdown": 0.25, "sharpe": 0.5}, LIMITS).accepted


def test_drawdown_too_deep() -> None:
    verdict = judge({"max_drawdown": 0.4123, "sharpe": 0.9}, LIMITS)
    assert not verdict.accepted
    assert verdict.reasons == ["max drawdown 41.23% exceeds the limit of 25.00%"]


def test_sharpe_too_low() -> None:
    verdict = judge({"max_drawdown": 0.1, "sharpe": 0.1234}, LIMITS)
    assert verdict.reasons == ["Sharpe ratio 0.123 is below the minimum of 0.500"]


def test_both_fail_with_one_reason_each() -> None:
    verdict = judge({"max_drawdown": 0.6, "sharpe": -0.2}, Constraints())
    assert not verdict.accepted
    assert len(verdict.reasons) == 2
    assert "60.00%" in verdict.reasons[0] and "35.00%" in verdict.reasons[0]
    assert "-0.200" in verdict.reasons[1] and "0.300" in verdict.reasons[1]


def test_near_misses_do_not_read_as_equal() -> None:
    verdict = judge({"max_drawdown": 0.250001, "sharpe": 0.4999}, LIMITS)
    assert verdict.reasons == [
        "max drawdown 25.0001% exceeds the limit of 25.0000%",
        "Sharpe ratio 0.4999 is below the minimum of 0.5000",
    ]


def test_missing_or_broken_metrics_are_errors() -> None:
    with pytest.raises(ValueError, match="sharpe"):
        judge({"max_drawdown": 0.1}, LIMITS)
    with pytest.raises(ValueError, match="finite"):
        judge({"max_drawdown": 0.1, "sharpe": math.nan}, LIMITS)
