"""The backtest step's evaluation on plain frames: metrics in and out of sample, the
verdict on the out-of-sample part, the trials the saga counted, the sandbox named; and a
domain error answered as the step's failure, never raised to the bus."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from types import SimpleNamespace
from typing import cast

import numpy as np
import pandas as pd
import pytest

from alphasaga_backtest.service import evaluate, make_handlers
from alphasaga_contracts import Service, Streams
from alphasaga_contracts import steps as st
from alphasaga_contracts.research import ArtifactRef, Constraints, ResearchRequest
from alphasaga_shared.eventstore import ArtifactStore, EventStore
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.wire import Delivery, Envelope
from alphasaga_shared.worker import Worker
from tests.support.replies import HYPOTHESIS

REF = ArtifactRef(sha256="0" * 64, kind="x", media_type="text/csv", size=0)


def frames(n: int = 600) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(9)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, n)))
    index = pd.bdate_range("2010-01-01", periods=n, name="date")
    bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)
    signals = pd.DataFrame({"signal": (np.arange(n) // 30 % 2).astype(float)}, index=index)
    predictions = pd.DataFrame({"proba": 0.9}, index=index)
    return bars, signals, predictions


def command(**update: object) -> st.RunBacktest:
    request = ResearchRequest(dataset="sp500", constraints=Constraints(max_drawdown=1.0, min_sharpe=-10.0))
    values: dict[str, object] = {
        "saga_id": uuid.uuid4(),
        "step": "backtest",
        "attempt": 1,
        "request": request,
        "dataset": REF,
        "signals": REF,
        "predictions": REF,
        "hypothesis": HYPOTHESIS,
        "sandbox": "bubblewrap+seccomp",
        **update,
    }
    return st.RunBacktest.model_validate(values)


def test_the_verdict_is_taken_out_of_sample_and_the_report_has_both_parts() -> None:
    bars, signals, predictions = frames()
    split = bars.index[420]
    report, chart, metrics, verdict = evaluate(bars, signals, predictions, command(out_of_sample_start=split.date()))
    assert verdict.period == "out_of_sample"
    assert (verdict.start, verdict.end) == (split.date(), bars.index[-1].date())
    assert verdict.sandbox == "bubblewrap+seccomp"
    assert metrics["out_of_sample.n_periods"] == 180 and metrics["in_sample.n_periods"] == 419
    assert metrics["n_periods"] == 599
    assert metrics["out_of_sample.sharpe"] != metrics["in_sample.sharpe"]
    document = json.loads(report)
    assert document["periods"]["out_of_sample"]["start"] == split.date().isoformat()
    assert document["verdict"]["period"] == "out_of_sample"
    assert document["notes"]["sandbox"] == "bubblewrap+seccomp"
    assert chart.startswith(b"\x89PNG")


def test_a_rejection_names_the_out_of_sample_figures() -> None:
    bars, signals, predictions = frames()
    strict = ResearchRequest(dataset="sp500", constraints=Constraints(min_sharpe=10.0))
    _, _, metrics, verdict = evaluate(
        bars, signals, predictions, command(request=strict, out_of_sample_start=bars.index[420].date())
    )
    assert not verdict.accepted
    assert f"{metrics['out_of_sample.sharpe']:.3f}" in verdict.reasons[0]


def test_the_planners_candidates_count_as_trials_and_the_label_says_so() -> None:
    bars, signals, predictions = frames()
    hypothesis = HYPOTHESIS.model_copy(update={"candidates": 6})
    report, _, metrics, _ = evaluate(bars, signals, predictions, command(hypothesis=hypothesis))
    assert metrics["trials"] == 6
    assert metrics["deflated_sharpe"] < metrics["probabilistic_sharpe"]
    notes = json.loads(report)["notes"]
    assert notes["deflated_sharpe"].startswith("deflated Sharpe ratio over 6 trials")
    one = HYPOTHESIS.model_copy(update={"candidates": 1})
    report, _, metrics, verdict = evaluate(bars, signals, predictions, command(hypothesis=one))
    assert metrics["deflated_sharpe"] == metrics["probabilistic_sharpe"]
    assert json.loads(report)["notes"]["deflated_sharpe"].startswith("probabilistic Sharpe ratio")
    assert verdict.period == "full"


@pytest.mark.parametrize("start", [dt.date(2009, 1, 1), dt.date(2030, 1, 1)])
def test_a_split_outside_the_bars_is_refused(start: dt.date) -> None:
    bars, signals, predictions = frames()
    with pytest.raises(ValueError, match="out-of-sample start"):
        evaluate(bars, signals, predictions, command(out_of_sample_start=start))


@pytest.mark.parametrize(
    "absurd",
    [{"trials": 10**40}, {"trial_sharpe_std": 1e308}, {"trials": 10**400}],
    ids=["non-finite-metrics", "overflow", "int-too-large"],
)
async def test_a_domain_error_is_invalid_input_not_retried_nor_dead_lettered(
    store: EventStore, absurd: dict[str, object]
) -> None:
    """Values the contract now refuses at the edge, forced past it (``model_copy`` does not
    validate): the worker still answers with the step's failure, invalid_input and not
    retryable, instead of raising, which the bus would redeliver until it dead-letters."""
    artifacts = ArtifactStore(store.pool)
    saga_id = uuid.uuid4()
    refs = {}
    for name, frame in zip(("dataset", "signals", "predictions"), frames(), strict=True):
        content = frame.to_csv(float_format="%.17g").encode()
        refs[name] = await artifacts.put(saga_id, "reasoning", f"{name}.csv", name, content, "text/csv")
    cmd = command(saga_id=saga_id, **refs)
    cmd = cmd.model_copy(update={"request": cmd.request.model_copy(update=absurd)})
    handlers = await make_handlers(cast(ServiceContext, SimpleNamespace(store=store)))
    worker = Worker(Service.BACKTEST, handlers, Streams("t"))
    envelope = Envelope(message=cmd, message_id="m-1", correlation_id=str(saga_id), causation_id="", traceparent="")
    delivery = Delivery(stream=Streams("t").commands(Service.BACKTEST), entry_id="1-0", fields={})
    [reply] = await worker.handle(envelope, delivery)
    failed = reply.envelope.message
    assert isinstance(failed, st.StepFailed) and failed.kind == "backtest", failed
    assert failed.error_kind == "invalid_input" and not failed.retryable
    assert failed.error.startswith("cannot backtest:")
