"""The invariant checker on histories built by the real decision logic, then tampered with."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

from alphasaga_contracts import Service, Streams
from alphasaga_contracts.saga import CancelSaga
from alphasaga_orchestrator.decide import TimerFired, decide
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.invariants import check_saga
from alphasaga_saga.mapper import SagaMapper
from alphasaga_shared.eventstore import RecordedEvent
from alphasaga_shared.outbox_rows import outbox_events
from alphasaga_shared.wire import Outgoing, envelope_for
from tests.support.saga_inputs import CTX, SAGA, compensated, failure, start, success, timer, wired

REPO = SagaMapper()


def record(*inputs: Any) -> tuple[list[RecordedEvent], list[RecordedEvent]]:
    """Run the inputs through decide() and keep what the store would hold."""
    saga: Saga | None = None
    events: list[RecordedEvent] = []
    outbox: list[RecordedEvent] = []
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i, m in enumerate(inputs):
        incoming = m if isinstance(m, TimerFired) else envelope_for(m, correlation_id=str(SAGA), message_id=f"m{i}")
        d = decide(saga, incoming, CTX)
        saga = d.saga
        pending = saga.collect_events() if saga is not None else []
        for row in REPO.to_new_events(pending, {}):
            events.append(_recorded(f"saga-{SAGA}", len(events) + 1, row.type, row.data, row.metadata, now))
        for row in outbox_events(wired(d, f"m{i}" if not isinstance(m, TimerFired) else m.message_id)):
            outbox.append(_recorded(f"outbox:{SAGA}", len(outbox) + 1, row.type, row.data, row.metadata, now))
    return events, outbox


def _recorded(
    stream: str, version: int, type_: str, data: Any, meta: dict[str, Any], now: dt.datetime
) -> RecordedEvent:
    parsed = data if isinstance(data, dict) else json.loads(data)  # as the store returns it
    return RecordedEvent(version, stream, version, uuid.uuid4(), type_, parsed, meta, 1, now)


def check(events: list[RecordedEvent], outbox: list[RecordedEvent]) -> list[str]:
    return check_saga(SAGA, events, outbox, fold=REPO.fold)


HAPPY = (start(), success("reasoning"), success("codegen"), success("ml"), success("backtest"))
ROLLED_BACK = (
    start(),
    success("reasoning"),
    success("codegen"),
    failure("ml"),
    compensated("codegen"),
    compensated("reasoning"),
)
RETRIED = (start(), timer("step_timeout", "reasoning", 1), timer("retry", "reasoning", 2), success("reasoning", 2))
CANCELLED_IN_ML = (
    start(),
    success("reasoning"),
    success("codegen"),
    CancelSaga(saga_id=SAGA, reason="r"),
    compensated("ml"),
    compensated("codegen"),
    compensated("reasoning"),
)


def test_healthy_histories_pass() -> None:
    for history in (HAPPY, ROLLED_BACK, RETRIED, CANCELLED_IN_ML):
        assert check(*record(*history)) == []


def test_a_cancelled_saga_that_skips_the_interrupted_step_is_reported() -> None:
    events, outbox = record(*CANCELLED_IN_ML)
    without_ml = [e for e in events if not (e.type.endswith("StepCompensated") and e.data["step"] == "ml")]
    renumbered = [dataclasses.replace(e, version=i + 1) for i, e in enumerate(without_ml)]
    problems = check(renumbered, outbox)
    assert any("expected newest first ['ml', 'codegen', 'reasoning']" in p for p in problems), problems


def test_compensation_started_stored_before_the_interrupted_field_still_folds_and_passes() -> None:
    events, outbox = record(*ROLLED_BACK)
    old_style = [
        dataclasses.replace(e, data={k: v for k, v in e.data.items() if k != "interrupted"})
        if e.type.endswith("CompensationStarted")
        else e
        for e in events
    ]
    assert any(e.type.endswith("CompensationStarted") and "interrupted" in e.data for e in events)
    assert check(old_style, outbox) == []


def test_a_gap_in_versions_is_reported() -> None:
    events, outbox = record(*HAPPY)
    del events[3]
    assert any("contiguous" in p for p in check(events, outbox))


def test_an_event_after_the_terminal_one_is_reported() -> None:
    events, outbox = record(*HAPPY)
    extra = dataclasses.replace(events[2], version=len(events) + 1)
    problems = check([*events, extra], outbox)
    assert any("after terminal Completed" in p for p in problems)


def test_a_command_issued_twice_is_reported() -> None:
    events, outbox = record(*HAPPY)
    commanded = next(e for e in events if e.type.endswith("StepCommanded"))
    doubled = [
        *events[:2],
        dataclasses.replace(commanded, version=3),
        *(dataclasses.replace(e, version=e.version + 1) for e in events[2:]),
    ]
    problems = check(doubled, outbox)
    assert any("commanded 2 times" in p for p in problems)


def test_a_command_missing_from_the_outbox_is_reported() -> None:
    events, outbox = record(*HAPPY)
    missing = [r for r in outbox if r.type != "ml.TrainModel"]
    problems = check(events, missing)
    assert any("in the outbox 0 times" in p for p in problems)


def test_rolled_back_without_compensating_everything_is_reported() -> None:
    events, outbox = record(*ROLLED_BACK)
    first_compensated = next(i for i, e in enumerate(events) if e.type.endswith("StepCompensated"))
    tampered = [
        *events[:first_compensated],
        *(dataclasses.replace(e, version=e.version - 1) for e in events[first_compensated + 1 :]),
    ]
    problems = check(tampered, outbox)
    assert any("ROLLED_BACK but compensated" in p for p in problems)


def test_an_unanswered_command_in_a_finished_saga_is_reported() -> None:
    events, outbox = record(*HAPPY)
    without_reply = [e for e in events if not (e.type.endswith("StepSucceeded") and e.data["step"] == "ml")]
    renumbered = [dataclasses.replace(e, version=i + 1) for i, e in enumerate(without_reply)]
    problems = check(renumbered, outbox)
    assert any("without a reply" in p and "ml" in p for p in problems)


def test_a_start_recorded_in_the_outbox_by_a_submit_is_not_a_command() -> None:
    """A submit through the API records the saga's start as the first row of its outbox
    (the relay publishes it); the checker takes it for what it is, and still finds a
    command that is missing."""
    for history in (HAPPY, ROLLED_BACK, CANCELLED_IN_ML):
        events, outbox = record(*history)
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        submitted = outbox_events(
            [Outgoing(Streams("t").commands(Service.ORCHESTRATOR), envelope_for(start(), correlation_id=str(SAGA)))]
        )
        first = _recorded(f"outbox:{SAGA}", 1, submitted[0].type, submitted[0].data, submitted[0].metadata, now)
        with_start = [first, *(dataclasses.replace(r, version=r.version + 1) for r in outbox)]
        assert first.type == "orchestrator.StartResearch"
        assert check(events, with_start) == []
        command = next(r for r in with_start if not r.type.startswith(("sagas.", "orchestrator.")))
        problems = check(events, [r for r in with_start if r is not command])
        assert any("in the outbox 0 times" in p for p in problems)


def test_outbox_rows_of_before_step_kinds_and_of_now_pass_alike() -> None:
    """A saga that was compensating across an upgrade: its first compensation went out
    under the former per-service type name, the next as ``steps.CompensateStep``."""
    events, outbox = record(*ROLLED_BACK)
    first = next(i for i, r in enumerate(outbox) if r.type == "steps.CompensateStep")
    body = {k: v for k, v in outbox[first].data.items() if k != "kind"}
    outbox[first] = dataclasses.replace(outbox[first], type="codegen.CompensateStrategy", data=body)
    assert [r.type for r in outbox if not r.type.startswith("sagas.")][-2:] == [
        "codegen.CompensateStrategy",
        "steps.CompensateStep",
    ]
    assert check(events, outbox) == []
    assert check(events, [r for i, r in enumerate(outbox) if i != first]) != []  # it still counts


def test_a_campaign_is_checked_against_its_own_rules() -> None:
    """A campaign run by the real decisions passes; the same log with a child started once
    too often, or the report commanded while a child still runs, does not."""
    from alphasaga_contracts import campaign as cp
    from alphasaga_contracts.saga import ChildSagaEnded, StartCampaign
    from tests.support import replies

    spec = cp.CampaignSpec(datasets=["sp500"], families=["trend_following"], budget=3, concurrency=2)

    def ended(trial: int) -> ChildSagaEnded:
        return ChildSagaEnded(saga_id=SAGA, child_id=cp.child_id(SAGA, trial), state="ROLLED_BACK", error="x")

    inputs = (StartCampaign(saga_id=SAGA, spec=spec), ended(1), ended(2), ended(3))
    events, outbox = record(*inputs, replies.success("campaign_report", SAGA, "report", 1))
    assert [e.type.rsplit(".", 1)[-1] for e in events][-1] == "Completed"
    assert check(events, outbox) == []
    first_start = next(e for e in events if e.type.endswith("ChildStarted"))
    again = dataclasses.replace(first_start, version=len(events) + 1)
    assert any("started twice" in p for p in check_saga(SAGA, [*events[:-1], again], outbox))
    early, _ = record(*inputs[:3])
    report = next(e for e in events if e.type.endswith("StepCommanded"))
    tampered = [*early, dataclasses.replace(report, version=len(early) + 1)]
    assert any("children still ran" in p for p in check_saga(SAGA, tampered, outbox))
