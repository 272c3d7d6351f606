"""The explorer's pure parts: the Gantt bars from a saga's events, the charts' geometry,
the code highlighter and the list's filter."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from alphasaga_api.explorer import charts, filters, highlight
from alphasaga_api.explorer.timeline import bars, gantt, seconds
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
