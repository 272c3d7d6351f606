"""A campaign's report, pure: the ranking deflates every child again with the final count
and spread of trials, and the table and charts are made from it."""

from __future__ import annotations

import csv
import io
import math
import uuid

import pandas as pd  # type: ignore[import-untyped]

from alphasaga_backtest.domain import campaign_report
from alphasaga_backtest.domain.metrics import deflated_sharpe_ratio, moments
from alphasaga_contracts import campaign as cp
from alphasaga_contracts import deflation


def outcome(trial: int, sharpe: float | None, *, state: str = "COMPLETED", candidates: int = 1) -> cp.TrialOutcome:
    return cp.TrialOutcome(
        trial=trial,
        saga_id=uuid.UUID(int=trial),
        dataset="sp500",
        family="trend_following",
        seed=7,
        state=state,  # type: ignore[arg-type]
        candidates=candidates,
        sharpe=sharpe,
        n_periods=None if sharpe is None else 1000,
        skewness=None if sharpe is None else 0.0,
        kurtosis=None if sharpe is None else 3.0,
        deflated_sharpe=0.9,
        accepted=sharpe is not None and sharpe > 0.3,
        error=None if state == "COMPLETED" else "boom",
    )


def test_the_ranking_counts_every_completed_childs_hypotheses_and_their_spread() -> None:
    outcomes = [outcome(1, 1.2, candidates=2), outcome(2, 0.1, candidates=3), outcome(3, None, state="ROLLED_BACK")]
    final, ranked = cp.rank(outcomes)
    assert final.completed == 2 and final.trials == 5
    assert final.trial_sharpe_std is not None and math.isclose(final.trial_sharpe_std, math.sqrt(0.605))
    assert [r.trial for r in ranked] == [1, 2]
    variance = deflation.annual_to_period_variance(final.trial_sharpe_std)
    expected = deflation.deflated_sharpe(1.2 / math.sqrt(252), 0.0, 3.0, 1000, 5, variance)
    assert math.isclose(ranked[0].deflated_sharpe, expected)
    assert ranked[0].deflated_sharpe < ranked[0].deflated_sharpe_when_run  # more trials deflate more


def test_the_shared_formula_is_the_backtests() -> None:
    rng = __import__("numpy").random.default_rng(3)
    returns = rng.normal(0.0005, 0.01, 800)
    sr, g3, g4, n = moments(returns)
    variance = deflation.annual_to_period_variance(0.5)
    assert math.isclose(
        deflation.deflated_sharpe(sr, g3, g4, n, 10, variance), deflated_sharpe_ratio(returns, 10, variance)
    )


def test_the_table_lists_ranked_children_then_the_others_and_the_charts_are_pngs() -> None:
    outcomes = [outcome(1, 0.2), outcome(2, 1.0), outcome(3, None, state="ROLLED_BACK")]
    final, ranked = cp.rank(outcomes)
    rows = list(csv.DictReader(io.StringIO(campaign_report.table(outcomes, ranked).decode())))
    assert [(r["rank"], r["trial"], r["state"]) for r in rows] == [
        ("1", "2", "COMPLETED"),
        ("2", "1", "COMPLETED"),
        ("", "3", "ROLLED_BACK"),
    ]
    assert rows[2]["error"] == "boom"
    chart = campaign_report.sharpe_by_trial(outcomes, final)
    index = pd.date_range("2020-01-01", periods=5)
    curve = pd.Series([1.0, 1.1, 1.2, 1.1, 1.3], index=index)
    equity = campaign_report.top_equity(ranked, {ranked[0].saga_id: curve})
    assert chart.startswith(b"\x89PNG") and equity.startswith(b"\x89PNG")
    assert campaign_report.sharpe_by_trial(outcomes, final) == chart  # the same bytes for the same data


def test_a_childs_out_of_sample_equity_is_read_from_its_report() -> None:
    report = {
        "equity": {"dates": ["2020-01-01", "2020-01-02", "2020-01-03"], "values": [1.0, 1.1, 1.2]},
        "periods": {"out_of_sample": {"start": "2020-01-02"}},
    }
    assert campaign_report.out_of_sample_equity(report).tolist() == [1.1, 1.2]
