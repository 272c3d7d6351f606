"""DAG workflows (research v2 and small ones made for a rule): ready steps start at once,
fan-out and fan-in, failure stops and compensates along the needs, and the invariant
checker confirms (or catches a tampered history). Pure: no broker, no database."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import replace
from typing import Any

import pytest

from alphasaga_contracts import Message
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.research import ArtifactRef, ResearchRequest
from alphasaga_orchestrator.decide import Context, Decision, TimerFired, decide
from alphasaga_saga.aggregate import Saga, TimerKind
from alphasaga_saga.invariants import check_saga
from alphasaga_saga.mapper import SagaMapper
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS, WorkflowFileError, parse_workflows
from alphasaga_shared.eventstore import RecordedEvent
from alphasaga_shared.outbox_rows import outbox_events
from alphasaga_shared.wire import envelope_for
from tests.support import replies
from tests.support.saga_inputs import CTX, SAGA, wired

REPO = SagaMapper()
V2 = DEFAULT_WORKFLOWS.get("research", 2)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def start(version: int | None = 2, workflow: str = "research", **request: Any) -> Message:
    return sg.StartResearch(
        saga_id=SAGA,
        workflow=workflow,
        workflow_version=version,
        request=ResearchRequest(dataset="sp500", **request),
    )


def ref(letter: str) -> ArtifactRef:
    return ArtifactRef(sha256=letter * 64, kind="x", media_type="text/csv", size=1)


def ok(step: str, attempt: int = 1, workflow: Any = V2) -> Message:
    return replies.success(workflow.step(step).kind.name, SAGA, step, attempt)


def trained(item: str, letter: str) -> Message:
    return st.ModelTrained(
        saga_id=SAGA,
        step=f"ml[{item}]",
        attempt=1,
        model=ref(letter),
        predictions=ref(letter),
        model_metrics=replies.METRICS,
    )


def backtested(item: str, oos_dsr: float) -> Message:
    return st.BacktestCompleted(
        saga_id=SAGA,
        step=f"backtest[{item}]",
        attempt=1,
        report=ref("c" if item == "linear" else "d"),
        chart=ref("e"),
        metrics={"sharpe": 1.0, "out_of_sample.deflated_sharpe": oos_dsr},
        verdict=replies.VERDICT,
    )


def failed(step: str, workflow: Any = V2, retryable: bool = False) -> Message:
    return replies.failure(workflow.step(step).kind.name, SAGA, step, 1, retryable=retryable)


def undone(step: str, workflow: Any = V2) -> Message:
    return replies.compensated(workflow.step(step).kind.name, SAGA, step, 1)


class Run:
    """Inputs through decide(), keeping what the store would hold."""

    def __init__(self, ctx: Context = CTX) -> None:
        self.ctx = ctx
        self.saga: Saga | None = None
        self.decisions: list[Decision] = []
        self.events: list[RecordedEvent] = []
        self.outbox: list[RecordedEvent] = []

    def __call__(self, *inputs: Message | TimerFired) -> Decision:
        for m in inputs:
            i = len(self.decisions)
            incoming = m if isinstance(m, TimerFired) else envelope_for(m, correlation_id=str(SAGA), message_id=f"m{i}")
            d = decide(self.saga, incoming, self.ctx)
            self.saga = d.saga
            self.decisions.append(d)
            pending = d.saga.collect_events() if d.saga is not None else []
            for row in REPO.to_new_events(pending, {}):
                self.events.append(self._row(f"saga-{SAGA}", len(self.events) + 1, row.type, row.data))
            cause = m.message_id if isinstance(m, TimerFired) else f"m{i}"
            for row in outbox_events(wired(d, cause)):
                self.outbox.append(self._row(f"outbox:{SAGA}", len(self.outbox) + 1, row.type, row.data, row.metadata))
        return self.decisions[-1]

    @staticmethod
    def _row(stream: str, version: int, type_: str, data: Any, meta: dict[str, Any] | None = None) -> RecordedEvent:
        parsed = data if isinstance(data, dict) else json.loads(data)
        return RecordedEvent(version, stream, version, uuid.uuid4(), type_, parsed, meta or {}, 1, NOW)

    def check(self, events: list[RecordedEvent] | None = None) -> list[str]:
        registry = self.ctx.workflows
        return check_saga(SAGA, events or self.events, self.outbox, fold=REPO.fold, workflows=registry)

    def state(self) -> str:
        assert self.saga is not None
        return str(self.saga.state)


def commands(d: Decision) -> dict[str, Any]:
    """The step commands and compensations a decision sent, by step."""
    return {s.message.step: s.message for s in d.sends if isinstance(s.message, st.StepCommand | st.CompensateStep)}


def kinds(run: Run) -> list[str]:
    return [e.type.rsplit(".", 1)[-1] for e in run.events]


def test_v2_fans_ml_out_pairs_each_backtest_with_its_model_and_selects_after_both() -> None:
    run = Run()
    run(start(), ok("reasoning"))
    both = commands(run(ok("codegen")))
    assert set(both) == {"ml[lightgbm]", "ml[linear]"}, "both branches start in one decision"
    assert {both[n].model_kind for n in both} == {"lightgbm", "linear"}
    assert set(commands(run(trained("linear", "b")))) == {"backtest[linear]"}, "a branch goes on without the other"
    assert commands(run.decisions[-1])["backtest[linear]"].predictions == ref("b")
    assert commands(run(trained("lightgbm", "f")))["backtest[lightgbm]"].predictions == ref("f")
    assert commands(run(backtested("lightgbm", 0.2))) == {}, "the fan-in waits for every branch"
    select = commands(run(backtested("linear", 0.6)))["select"]
    assert isinstance(select, st.SelectModel)
    assert set(select.backtest) == {"lightgbm", "linear"}
    assert select.backtest["linear"].metrics["out_of_sample.deflated_sharpe"] == 0.6
    d = run(ok("select"))
    assert run.state() == "COMPLETED" and [type(s.message) for s in d.sends][-1] is sg.SagaCompleted
    assert run.check() == []
    assert "FannedOut" in kinds(run)


def test_each_branch_has_its_own_deadline_and_retries_alone() -> None:
    run = Run()
    run(start(), ok("reasoning"), ok("codegen"))
    saga = run.saga
    assert saga is not None and set(saga.deadlines) == {"step:ml[lightgbm]", "step:ml[linear]"}
    retried = commands(run(TimerFired(SAGA, TimerKind.STEP_TIMEOUT, "ml[linear]", 1)))
    assert retried == {} and run.state() == "RUNNING"  # its retry waits for a backoff
    assert saga.deadlines["step:ml[linear]"]["kind"] == TimerKind.RETRY
    assert saga.waiting_for(TimerKind.STEP_TIMEOUT, "ml[lightgbm]", 1), "the other branch is untouched"
    assert saga.deadline == min(saga.deadlines.values(), key=lambda x: x["due_at"])
    again = commands(run(TimerFired(SAGA, TimerKind.RETRY, "ml[linear]", 2)))
    assert list(again) == ["ml[linear]"] and again["ml[linear]"].attempt == 2
    assert run.check() == []


def test_a_branch_failing_for_good_cancels_the_other_and_compensates_along_the_needs() -> None:
    run = Run()
    run(start(), ok("reasoning"), ok("codegen"))
    d = run(failed("ml[linear]"))
    assert run.state() == "COMPENSATING"
    assert list(commands(d)) == ["ml[lightgbm]"], "the branch in flight is undone first, alone"
    assert run.saga is not None and run.saga.to_compensate == ["ml[lightgbm]", "codegen", "reasoning"]
    assert commands(run(trained("lightgbm", "f"))) == {}, "its late success changes nothing"
    assert list(commands(run(undone("ml[lightgbm]")))) == ["codegen"]
    assert list(commands(run(undone("codegen")))) == ["reasoning"]
    run(undone("reasoning"))
    assert run.state() == "ROLLED_BACK"
    assert run.check() == []


def test_independent_branches_are_compensated_side_by_side_after_what_needs_them() -> None:
    run = Run()
    run(start(), ok("reasoning"), ok("codegen"), trained("linear", "b"), trained("lightgbm", "f"))
    run(backtested("linear", 0.1), backtested("lightgbm", 0.2))
    first = commands(run(failed("select")))
    assert set(first) == {"backtest[linear]", "backtest[lightgbm]"}, "both leaves at once"
    assert list(commands(run(undone("backtest[lightgbm]")))) == ["ml[lightgbm]"]
    assert list(commands(run(undone("ml[lightgbm]")))) == [], "codegen waits for the linear branch"
    assert list(commands(run(undone("backtest[linear]")))) == ["ml[linear]"]
    assert list(commands(run(undone("ml[linear]")))) == ["codegen"]
    run(undone("codegen"), undone("reasoning"))
    assert run.state() == "ROLLED_BACK"
    assert run.check() == []


def test_the_checker_catches_a_compensation_before_what_needs_it_and_a_fan_in_before_its_branches() -> None:
    run = Run()
    run(start(), ok("reasoning"), ok("codegen"), failed("ml[linear]"))
    run(undone("ml[lightgbm]"), undone("codegen"), undone("reasoning"))
    events = list(run.events)
    # codegen's compensation moved before that of ml[lightgbm], which needs it
    order = [e for e in events if e.type.endswith(("CompensationCommanded", "StepCompensated"))]
    swapped = [order[2], order[3], order[0], order[1]]
    positions = [events.index(e) for e in order[:4]]
    for position, e in zip(sorted(positions), swapped, strict=True):
        events[position] = e
    events = [replace(e, version=n) for n, e in enumerate(events, start=1)]
    assert any("codegen compensated before ['ml[lightgbm]']" in p for p in run.check(events)), run.check(events)

    happy = Run()
    happy(start(), ok("reasoning"), ok("codegen"), trained("linear", "b"), trained("lightgbm", "f"))
    happy(backtested("linear", 0.1), backtested("lightgbm", 0.2), ok("select"))
    rows = list(happy.events)
    select_at = next(i for i, e in enumerate(rows) if e.type.endswith("StepCommanded") and e.data["step"] == "select")
    last_backtest = max(
        i for i, e in enumerate(rows) if e.type.endswith("StepSucceeded") and e.data["step"].startswith("backtest")
    )
    rows.insert(last_backtest, rows.pop(select_at))
    rows = [replace(e, version=n) for n, e in enumerate(rows, start=1)]
    assert any("fan-in select commanded before its needs" in p for p in happy.check(rows)), happy.check(rows)


FIRST_ONE: dict[str, Any] = {
    "name": "race",
    "version": 1,
    "steps": [
        {"name": "reasoning", "kind": "reasoning"},
        {"name": "codegen", "kind": "codegen"},
        {"name": "ml", "kind": "ml", "for_each": {"in": "request.models", "as": "model_kind"}},
        {"name": "backtest", "kind": "backtest", "needs": ["ml"], "for_each": {"in": "request.models"}},
        {"name": "select", "kind": "select", "needs": ["backtest"], "first": 1},
    ],
}


def test_a_fan_in_on_the_first_k_starts_after_k_branches_and_the_saga_ends_after_all() -> None:
    registry = parse_workflows({"workflows": [FIRST_ONE]})
    race = registry.get("race", 1)
    run = Run(replace(CTX, workflows=registry))
    run(start(None, "race"), ok("reasoning", workflow=race), ok("codegen", workflow=race))
    run(trained("linear", "b"), trained("lightgbm", "f"))
    select = commands(run(backtested("linear", 0.3)))["select"]
    assert list(select.backtest) == ["linear"], "it took the first branch to succeed"
    run(ok("select", workflow=race))
    assert run.state() == "RUNNING", "the other branch is still running"
    run(backtested("lightgbm", 0.2))
    assert run.state() == "COMPLETED"
    assert run.check() == []


def test_a_fan_out_over_something_that_is_no_list_compensates_with_the_reason() -> None:
    bad = {**FIRST_ONE, "name": "bad"}
    bad["steps"] = [dict(s) for s in FIRST_ONE["steps"]]
    bad["steps"][2]["for_each"] = {"in": "request.dataset", "as": "model_kind"}
    registry = parse_workflows({"workflows": [bad]})
    run = Run(replace(CTX, workflows=registry))
    workflow = registry.get("bad", 1)
    run(start(None, "bad"), ok("reasoning", workflow=workflow), ok("codegen", workflow=workflow))
    assert run.state() == "COMPENSATING"
    assert run.saga is not None and "ml cannot fan out" in str(run.saga.failure) and "'sp500'" in str(run.saga.failure)
    assert run.check() == []


def test_a_linear_workflow_is_a_chain_and_v1_stays_the_default() -> None:
    v1 = DEFAULT_WORKFLOWS.get("research", 1)
    assert v1.is_chain() and not V2.is_chain()
    assert DEFAULT_WORKFLOWS.latest("research") == v1, "v2 is a preview, started only by naming it"
    assert [V2.needs(s.name) for s in V2.steps] == [(), ("reasoning",), ("codegen",), ("ml",), ("backtest",)]


@pytest.mark.parametrize(
    ("steps", "why"),
    [
        ([{"kind": "reasoning", "needs": ["codegen"]}, {"kind": "codegen"}], "listed after it"),
        ([{"kind": "reasoning", "needs": ["nothing"]}], "needs unknown step"),
        ([{"kind": "ml", "for_each": {"in": "request.models", "as": "no_such_input"}}], "no input 'no_such_input'"),
        ([{"kind": "reasoning"}, {"kind": "codegen", "first": 1}], "first: 1 needs a fanned-out step"),
        ([{"kind": "reasoning", "for_each": ["a"]}], "for_each is"),
        ([{"kind": "reasoning", "wait": 1}], "unknown setting(s) wait"),
    ],
)
def test_a_definition_that_is_no_runnable_dag_is_refused(steps: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(WorkflowFileError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_workflows({"workflows": [{"name": "w", "version": 1, "steps": steps}]})


def test_a_saga_is_refused_an_unknown_version() -> None:
    run = Run()
    d = run(start(9))
    assert d.saga is None and "unknown workflow 'research v9' (versions known: v1, v2)" in d.note


def test_without_its_definition_a_sequential_log_is_held_to_a_chain_and_a_parallel_one_is_reported() -> None:
    chain = Run()
    chain(start(1), ok("reasoning"), ok("codegen"), ok("ml"), ok("backtest"))
    empty = parse_workflows({"workflows": [{"name": "other", "version": 1, "steps": [{"kind": "reasoning"}]}]})
    assert check_saga(SAGA, chain.events, chain.outbox, fold=REPO.fold, workflows=empty) == []
    dag_run = Run()
    dag_run(start(), ok("reasoning"), ok("codegen"))
    found = check_saga(SAGA, dag_run.events, dag_run.outbox, fold=REPO.fold, workflows=empty)
    assert found == ["workflow research v2 is not among the definitions given: its DAG cannot be checked"]
