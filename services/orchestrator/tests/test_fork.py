"""Fork and diff, pure: a fork planned from a saga's log reuses the steps its step needs
(never commanded again, never compensated by the fork), changes what it was asked to, and
records where it came from in its first event; the diff of a saga and its fork names the
first event where they part, and what differs step by step."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import pytest

from alphasaga_client.forking import plan_fork
from alphasaga_client.rundiff import Side, compare
from alphasaga_contracts import Message
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.research import ArtifactRef, ResearchRequest
from alphasaga_orchestrator.decide import Decision, decide
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.invariants import check_saga
from alphasaga_saga.mapper import SagaMapper
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS
from alphasaga_shared.errors import InvalidRequest
from alphasaga_shared.eventstore import RecordedEvent
from alphasaga_shared.outbox_rows import outbox_events
from alphasaga_shared.wire import envelope_for
from tests.support import replies
from tests.support.saga_inputs import CTX

REPO = SagaMapper()
V1 = DEFAULT_WORKFLOWS.get("research", 1)
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Run:
    """One saga's inputs through decide(), keeping what the store would hold."""

    def __init__(self, saga_id: uuid.UUID) -> None:
        self.saga_id = saga_id
        self.saga: Saga | None = None
        self.decisions: list[Decision] = []
        self.events: list[RecordedEvent] = []
        self.outbox: list[RecordedEvent] = []

    def __call__(self, *inputs: Message) -> Decision:
        for m in inputs:
            cause = f"{self.saga_id}-m{len(self.decisions)}"
            d = decide(self.saga, envelope_for(m, correlation_id=str(self.saga_id), message_id=cause), CTX)
            self.saga = d.saga
            self.decisions.append(d)
            for row in REPO.to_new_events(d.saga.collect_events() if d.saga else [], {}):
                self.events.append(self._row(f"saga-{self.saga_id}", len(self.events) + 1, row.type, row.data, {}))
            for row in outbox_events(_wired(d, self.saga_id, cause)):
                self.outbox.append(
                    self._row(f"outbox:{self.saga_id}", len(self.outbox) + 1, row.type, row.data, row.metadata)
                )
        return self.decisions[-1]

    @staticmethod
    def _row(stream: str, version: int, type_: str, data: Any, meta: dict[str, Any]) -> RecordedEvent:
        parsed = data if isinstance(data, dict) else json.loads(data)
        return RecordedEvent(version, stream, version, uuid.uuid4(), type_, parsed, meta, 1, NOW)

    def ok(self, step: str, **outputs: Any) -> Message:
        reply = replies.success(V1.step(step).kind.name, self.saga_id, step, 1)
        return reply.model_copy(update=outputs)

    def check(self) -> list[str]:
        return check_saga(self.saga_id, self.events, self.outbox, fold=REPO.fold, workflows=DEFAULT_WORKFLOWS)

    def kinds(self) -> list[str]:
        return [e.type.rsplit(".", 1)[-1] for e in self.events]


def _wired(d: Decision, saga_id: uuid.UUID, cause: str) -> Any:
    from alphasaga_contracts import Streams
    from alphasaga_orchestrator.plan import Plan
    from alphasaga_orchestrator.repository import SagaRepository

    plan = Plan(SagaRepository(store=None), Streams("t"))  # type: ignore[arg-type]  # only addresses
    return plan.addressed(saga_id, d.saga, cause, d, "")


def ref(letter: str) -> ArtifactRef:
    return ArtifactRef(sha256=letter * 64, kind="x", media_type="text/csv", size=1)


def completed_source() -> Run:
    source = Run(uuid.uuid4())
    source(sg.StartResearch(saga_id=source.saga_id, request=ResearchRequest(dataset="sp500")))
    source(source.ok("reasoning", dataset=ref("d")), source.ok("codegen", signals=ref("5")))
    source(source.ok("ml", predictions=ref("b")), source.ok("backtest", metrics={"sharpe": 0.4}))
    assert source.saga is not None and str(source.saga.state) == "COMPLETED"
    return source


def forked(source: Run, changes: dict[str, Any]) -> tuple[Run, sg.StartResearch]:
    start = plan_fork(source.saga_id, source.events, DEFAULT_WORKFLOWS, "ml", changes)
    assert start.saga_id is not None
    fork = Run(start.saga_id)
    fork(start)
    return fork, start


def test_a_fork_from_ml_reuses_reasoning_and_codegen_and_runs_ml_with_the_change() -> None:
    source = completed_source()
    fork, start = forked(source, {"model_kind": "linear", "request.seed": 11})
    assert start.fork is not None and set(start.fork.reused) == {"reasoning", "codegen"}
    assert start.request.seed == 11
    first = fork.events[0].data
    assert first["forked_from"] == {"saga_id": str(source.saga_id), "version": len(source.events), "step": "ml"}
    ml = [s.message for s in fork.decisions[0].sends if isinstance(s.message, st.TrainModel)]
    assert len(ml) == 1 and ml[0].model_kind == "linear"
    assert ml[0].signals == ref("5") and ml[0].dataset == ref("d"), "the same artifacts, by their SHA-256"
    fork(fork.ok("ml", predictions=ref("c")), fork.ok("backtest", metrics={"sharpe": 0.9}))
    assert fork.saga is not None and str(fork.saga.state) == "COMPLETED"
    assert "reasoning" not in str([e.data for e in fork.events if e.type.endswith("StepCommanded")])
    assert fork.check() == []


def test_an_express_saga_records_its_lane_sends_every_command_there_and_its_fork_keeps_it() -> None:
    from alphasaga_contracts import Priority

    source = Run(uuid.uuid4())
    source(
        sg.StartResearch(saga_id=source.saga_id, request=ResearchRequest(dataset="sp500"), priority=Priority.EXPRESS)
    )
    source(source.ok("reasoning", dataset=ref("d")), source.ok("codegen", signals=ref("5")))
    source(source.ok("ml", predictions=ref("b")), source.ok("backtest", metrics={"sharpe": 0.4}))
    assert source.events[0].data["priority"] == "express"
    commands = [r.metadata["stream"] for r in source.outbox if not r.type.startswith("sagas.")]
    assert commands == [f"t:cmd:{k}:express" for k in ("reasoning", "codegen", "ml", "backtest")]
    assert source.check() == []
    fork, start = forked(source, {"model_kind": "linear"})
    assert start.priority == Priority.EXPRESS and fork.events[0].data["priority"] == "express"
    assert [r.metadata["stream"] for r in fork.outbox if not r.type.startswith("sagas.")] == ["t:cmd:ml:express"]
    normal = completed_source()
    assert normal.events[0].data["priority"] == "normal"
    wrong = [*normal.outbox]
    i = next(i for i, r in enumerate(wrong) if not r.type.startswith("sagas."))  # the reasoning command
    wrong[i] = dataclasses.replace(wrong[i], metadata={**wrong[i].metadata, "stream": "t:cmd:reasoning:express"})
    problems = check_saga(normal.saga_id, normal.events, wrong, fold=REPO.fold, workflows=DEFAULT_WORKFLOWS)
    assert any("not the normal lane" in p for p in problems), problems


def test_a_failed_fork_undoes_only_what_it_ran() -> None:
    fork, _ = forked(completed_source(), {})
    fork(fork.ok("ml"))
    assert fork.saga is not None
    d = fork(replies.failure("backtest", fork.saga_id, "backtest", 1, retryable=False))
    assert fork.saga.to_compensate == ["ml"]
    fork(replies.compensated("ml", fork.saga_id, "ml", 1))
    assert str(fork.saga.state) == "ROLLED_BACK" and d.sends
    assert fork.check() == []


def test_the_diff_of_a_saga_and_its_fork_names_the_first_event_where_they_part() -> None:
    source = completed_source()
    fork, _ = forked(source, {"model_kind": "linear"})
    fork(fork.ok("ml", predictions=ref("c")), fork.ok("backtest", metrics={"sharpe": 0.9}))
    found = compare(Side(source.saga_id, source.events, source.outbox), Side(fork.saga_id, fork.events, fork.outbox))
    d = found.first_divergence
    assert d is not None and d.a_event == d.b_event == "StepCommanded"
    assert [c.as_json() for c in d.changes] == [{"path": "inputs.model_kind", "before": "lightgbm", "after": "linear"}]
    by_step = {s.step: s for s in found.steps}
    assert set(by_step) == {"ml", "backtest"}, "the reused steps are the same work"
    assert [c.path for c in by_step["ml"].inputs] == ["model_kind"]
    assert [(c.path, c.before, c.after) for c in by_step["backtest"].metrics] == [("metrics.sharpe", 0.4, 0.9)]
    assert (
        compare(
            Side(source.saga_id, source.events, source.outbox), Side(source.saga_id, source.events, source.outbox)
        ).first_divergence
        is None
    )


@pytest.mark.parametrize(
    ("step", "changes", "why"),
    [
        ("nothing", {}, "no step 'nothing'"),
        ("ml", {"request.dataset": "nowhere"}, "not valid"),
    ],
)
def test_a_fork_that_cannot_be_is_refused_before_anything_is_sent(step: str, changes: dict[str, Any], why: str) -> None:
    source = completed_source()
    with pytest.raises(InvalidRequest, match=why):
        plan_fork(source.saga_id, source.events, DEFAULT_WORKFLOWS, step, changes)


def test_the_orchestrator_refuses_a_fork_that_changes_what_no_step_uses_or_reuses_the_wrong_steps() -> None:
    source = completed_source()
    start = plan_fork(source.saga_id, source.events, DEFAULT_WORKFLOWS, "ml", {"colour": "blue"})
    d = Run(uuid.uuid4())(start)
    assert d.saga is None and "not ['colour']" in d.note
    assert start.fork is not None
    wrong = start.model_copy(update={"fork": start.fork.model_copy(update={"reused": {"reasoning": {}}})})
    d = Run(uuid.uuid4())(wrong)
    assert d.saga is None and "reuses ['codegen', 'reasoning'], not ['reasoning']" in d.note
