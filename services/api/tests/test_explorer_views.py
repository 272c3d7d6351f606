"""The explorer's pure parts: the Gantt bars from a saga's events, the charts' geometry,
the code highlighter, the list's filter and a campaign's page."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from alphasaga_api.explorer import charts, filters, highlight, views
from alphasaga_api.explorer.timeline import bars, gantt, seconds
from alphasaga_client import CampaignStatus
from alphasaga_contracts.campaign import CampaignSpec, TrialOutcome, child_id, rank
from alphasaga_readmodel.summaries import SagaSummary
from alphasaga_shared.eventstore import RecordedEvent

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
TOPIC = "alphasaga_orchestrator.saga:Saga."


def _row(version: int, name: str, at_s: float, **data: Any) -> RecordedEvent:
    return RecordedEvent(
        global_position=version,
        stream_id="saga-x",
        version=version,
        event_id=uuid.uuid4(),
        type=TOPIC + name,
        data=data,
        metadata={},
        transaction_id=version,
        recorded_at=T0 + dt.timedelta(seconds=at_s),
    )


FAILED_ML = [
    _row(1, "Started", 0),
    _row(2, "StepCommanded", 0, step="reasoning", attempt=1),
    _row(3, "StepSucceeded", 2, step="reasoning", attempt=1),
    _row(4, "StepCommanded", 2, step="codegen", attempt=1),
    _row(5, "StepSucceeded", 5, step="codegen", attempt=1),
    _row(6, "StepCommanded", 5, step="ml", attempt=1),
    _row(7, "StepTimedOut", 6, step="ml", attempt=1),
    _row(8, "StepCommanded", 6.5, step="ml", attempt=2),
    _row(9, "StepFailed", 7, step="ml", attempt=2, error="too few rows"),
    _row(10, "CompensationStarted", 7, reason="ml failed"),
    _row(11, "CompensationCommanded", 7, step="codegen", attempt=1),
    _row(12, "StepCompensated", 7.5, step="codegen"),
    _row(13, "CompensationCommanded", 7.5, step="reasoning", attempt=1),
    _row(14, "StepCompensated", 8, step="reasoning"),
    _row(15, "RolledBack", 8),
]


def test_a_bar_per_attempt_and_per_compensation_newest_compensation_first() -> None:
    found = [(b.label, b.kind, b.outcome, b.duration_s) for b in bars(FAILED_ML)]
    assert found == [
        ("reasoning #1", "step", "succeeded", 2.0),
        ("codegen #1", "step", "succeeded", 3.0),
        ("ml #1", "step", "timed_out", 1.0),
        ("ml #2", "step", "failed", 0.5),
        ("undo codegen", "compensation", "compensated", 0.5),
        ("undo reasoning", "compensation", "compensated", 0.5),
    ]


def test_the_gantt_places_bars_on_one_axis_with_the_compensation_phase() -> None:
    g = gantt(FAILED_ML, now=T0 + dt.timedelta(hours=1))
    assert g.span_s == 8.0, "a saga that has ended is drawn to its last event, not to now"
    assert [round(p.x, 4) for p in g.placed[:2]] == [0.0, 0.25]
    assert g.phase == (7 / 8, 1 / 8)
    running = gantt(FAILED_ML[:6], now=T0 + dt.timedelta(seconds=10))
    assert running.span_s == 10.0 and running.placed[-1].bar.end is None


def test_durations_read_as_people_say_them() -> None:
    assert [seconds(x) for x in (0.0421, 3.21, 125.0, None)] == ["42 ms", "3.2 s", "2 min 5 s", "running"]


def test_equity_multiplies_the_trades_and_drawdown_falls_from_the_peak() -> None:
    equity = charts.equity_from_trades([{"return": 0.1}, {"return": -0.5}, {"return": float("nan")}, {"x": 1}])
    assert equity == [1.0, 1.1, 0.55]
    assert [round(x, 6) for x in charts.drawdown(equity)] == [0.0, 0.0, -50.0]
    plot = charts.plot([charts.Series("a", equity)], baseline=1.0)
    assert plot.low == 0.55 and plot.high == 1.1
    assert plot.lines[0].points.split()[0] == "0.0," + str(round(200 - (1 - 0.55) / 0.55 * 200, 2))


def test_metrics_pair_with_buy_and_hold_and_bars_rank_by_size() -> None:
    paired = charts.paired_metrics({"sharpe": 0.4, "buy_and_hold_sharpe": 0.8, "n_trades": 9})
    assert paired == [("sharpe", 0.4, 0.8), ("n_trades", 9, None)]
    assert [b.label for b in charts.bars({"a": 1.0, "b": -3.0, "c": 2.0}, top=2)] == ["b", "c"]


def test_code_is_highlighted_and_escaped() -> None:
    html = highlight.python_html('def f(x):\n    return x + 1  # "<b>"\ns = "<script>"\n')
    assert '<span class="tok-keyword">def</span>' in html
    assert '<span class="tok-number">1</span>' in html
    assert '<span class="tok-comment"># &quot;&lt;b&gt;&quot;</span>' in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert highlight.python_html("x = '''unterminated\n") == "x = &#x27;&#x27;&#x27;unterminated\n"


def test_the_filter_lives_in_the_url() -> None:
    q = filters.parse({"state": "COMPLETED", "min_sharpe": "0.5", "q": "3F1C", "after": "2026-01-05", "page": "x"})
    assert q.errors == []
    assert q.where.state == "COMPLETED" and q.where.min_sharpe == 0.5 and q.where.id_prefix == "3f1c"
    assert q.where.started_after == dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    assert q.url(state=None) == "q=3F1C&min_sharpe=0.5&after=2026-01-05"
    bad = filters.parse({"q": "3f%", "min_sharpe": "2", "max_sharpe": "1", "version": "-1"})
    assert bad.where.id_prefix is None, "a LIKE wildcard is not a prefix"
    assert bad.errors == ["saga id: hex digits and dashes", "version: a number", "min sharpe is above max sharpe"]


def _summary(workflow: str, saga_state: dict[str, Any]) -> SagaSummary:
    return SagaSummary(
        saga_id=uuid.uuid4(), state="RUNNING", workflow=workflow, workflow_version=1, current_step=None, attempt=0,
        steps_completed=[], failure=None, verdict=None, metrics=None, version=1, started_at=T0, updated_at=T0,
        saga_state=saga_state,
    )  # fmt: skip


def test_a_campaign_child_names_its_parent_and_a_campaign_row_is_marked() -> None:
    parent = uuid.uuid4()
    assert views.parent_campaign(_summary("research", {"parent": str(parent)})) == str(parent)
    assert views.parent_campaign(_summary("research", {"parent": None})) is None
    assert views.parent_campaign(_summary("research", {})) is None  # a summary stored without its state
    assert views.row(_summary("campaign", {}))["campaign"] is True
    assert views.row(_summary("research", {}))["campaign"] is False


def _outcome(trial: int, state: str, sharpe: float | None = None) -> TrialOutcome:
    completed = state == "COMPLETED"
    return TrialOutcome(
        trial=trial, saga_id=uuid.uuid4(), dataset="sp500", family="trend_following", seed=7, state=state,
        error=None if completed else "ml failed", accepted=completed or None, trials=trial, candidates=2,
        sharpe=sharpe, n_periods=500 if completed else None, deflated_sharpe=0.5 if completed else None,
    )  # fmt: skip


def _status(outcomes: list[TrialOutcome], report: dict[str, Any] | None, **progress: int) -> CampaignStatus:
    spec = CampaignSpec(datasets=["sp500"], families=["trend_following"], budget=4, concurrency=2)
    measured, ranking = rank(outcomes)
    return CampaignStatus(
        saga_id=uuid.uuid4(), state="COMPLETED" if report else "RUNNING", failure=None, spec=spec,
        measured=measured, ranking=ranking, outcomes=outcomes, report=report,
        **{"done": 0, "running": 0, "failed": 0, "waiting": 0, **progress},
    )  # fmt: skip


def test_a_campaign_shows_its_ranking_best_first_and_its_progress_as_shares_of_the_budget() -> None:
    outcomes = [_outcome(1, "COMPLETED", 0.4), _outcome(2, "ROLLED_BACK"), _outcome(3, "COMPLETED", 1.9)]
    shown = views.campaign(_status(outcomes, None, done=2, running=1, failed=1))
    assert shown["terminal"] is False and shown["artifacts"] is None
    assert shown["progress"] == {"done": 2, "running": 1, "failed": 1, "waiting": 0}
    assert shown["shares"] == {"done": 0.5, "running": 0.25, "failed": 0.25}
    assert shown["trials"] == 4, "the completed trials' candidates"
    assert [r["trial"] for r in shown["ranking"]] == [3, 1], "by deflated Sharpe, the failed trial not ranked"
    assert [r["rank"] for r in shown["ranking"]] == [1, 2]
    assert shown["ranking"][0]["saga_id"] == str(outcomes[2].saga_id)
    assert [(o["trial"], o["state"]) for o in shown["ended"]] == [
        (1, "COMPLETED"),
        (2, "ROLLED_BACK"),
        (3, "COMPLETED"),
    ]
    assert shown["children"] == [str(child_id(uuid.UUID(shown["id"]), t)) for t in (1, 2, 3, 4)], "the budget's"


def test_a_finished_campaign_links_its_reports_artifacts() -> None:
    ref = {"sha256": "a" * 64, "kind": "report", "media_type": "text/csv", "size": 10}
    png = {**ref, "sha256": "b" * 64, "media_type": "image/png"}
    report = {"table": ref, "chart": png, "equity": {**png, "sha256": "c" * 64}, "trials": 2}
    shown = views.campaign(_status([_outcome(1, "COMPLETED", 1.0)], report, done=1, failed=3))
    assert shown["terminal"] is True
    assert shown["artifacts"] == {
        "table": f"/explorer/artifacts/{'a' * 64}",
        "chart": f"/explorer/artifacts/{'b' * 64}",
        "equity": f"/explorer/artifacts/{'c' * 64}",
    }
