"""A campaign's decisions (docs/decisions/0022), pure: no broker, no database. The children
are sagas of their own; here their ends arrive as the notices their own decisions send."""

from __future__ import annotations

import uuid

from alphasaga_contracts import campaign as cp
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.envelope import Message
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator.decide import Decision, ToOrchestrator, decide
from alphasaga_saga.aggregate import Saga
from alphasaga_shared.wire import envelope_for
from tests.support import replies
from tests.support.saga_inputs import CTX, wired

CAMPAIGN = uuid.UUID("00000000-0000-4000-8000-00000000c001")
SPEC = cp.CampaignSpec(datasets=["sp500", "nasdaq"], families=["trend_following"], budget=5, concurrency=2)


def play(saga: Saga | None, *messages: Message) -> tuple[Saga | None, list[Decision]]:
    decisions = []
    for m in messages:
        about = getattr(m, "saga_id", None) or CAMPAIGN
        d = decide(saga, envelope_for(m, correlation_id=str(about), message_id=str(uuid.uuid4())), CTX)
        if d.saga is not None:
            d.saga.collect_events()
        saga = d.saga
        decisions.append(d)
    return saga, decisions


def starts(d: Decision) -> list[sg.StartResearch]:
    return [s.message for s in d.sends if isinstance(s.message, sg.StartResearch)]


def child(trial: int) -> uuid.UUID:
    return cp.child_id(CAMPAIGN, trial)


def ended(trial: int, sharpe: float | None = None, *, state: str = "COMPLETED") -> sg.ChildSagaEnded:
    metrics = {}
    if sharpe is not None:
        metrics = {
            "out_of_sample.sharpe": sharpe,
            "out_of_sample.n_periods": 1500.0,
            "out_of_sample.skewness": 0.0,
            "out_of_sample.kurtosis": 3.0,
            "out_of_sample.deflated_sharpe": 0.5,
            "out_of_sample.trials": 1.0,
        }
    return sg.ChildSagaEnded(
        saga_id=CAMPAIGN,
        child_id=child(trial),
        state=state,  # type: ignore[arg-type]
        candidates=2,
        accepted=sharpe is not None and sharpe > 0.3,
        metrics=metrics,
        error=None if state == "COMPLETED" else "boom",
    )


def begin() -> tuple[Saga, Decision]:
    saga, (d,) = play(None, sg.StartCampaign(saga_id=CAMPAIGN, spec=SPEC))
    assert saga is not None
    return saga, d


def test_a_campaign_starts_as_many_children_as_its_concurrency_through_the_orchestrators_stream() -> None:
    saga, d = begin()
    assert saga.workflow == "campaign" and saga.state == "RUNNING"
    first = starts(d)
    assert [s.saga_id for s in first] == [child(1), child(2)]
    assert [s.request.dataset for s in first] == ["sp500", "nasdaq"]
    assert all(s.parent == CAMPAIGN and s.request.objective == "trend" for s in first)
    # nothing measured yet: one trial each, the skill-less spread
    assert all(s.request.trials == 1 and s.request.trial_sharpe_std is None for s in first)
    out = wired(d, "m0")
    assert {o.stream for o in out if isinstance(o.envelope.message, sg.StartResearch)} == {"t:cmd:orchestrator"}
    assert [o.envelope.correlation_id for o in out if isinstance(o.envelope.message, sg.StartResearch)] == [
        str(child(1)),
        str(child(2)),
    ]


def test_each_child_is_told_the_trials_and_spread_the_completed_children_measured() -> None:
    saga, _ = begin()
    saga, (d1, d2) = play(saga, ended(1, 0.8), ended(2, 0.2))
    (third,) = starts(d1)
    assert third.saga_id == child(3) and third.request.trials == 3  # child 1 chose from 2 hypotheses
    assert third.request.trial_sharpe_std is None  # one Sharpe ratio has no spread
    (fourth,) = starts(d2)
    assert fourth.request.trials == 5
    assert fourth.request.trial_sharpe_std is not None
    assert abs(fourth.request.trial_sharpe_std - 0.42426406871192857) < 1e-12  # stdev(0.8, 0.2)


def test_a_failed_child_does_not_fail_the_campaign_and_is_not_counted() -> None:
    saga, _ = begin()
    saga, (d,) = play(saga, ended(1, state="ROLLED_BACK"))
    assert saga is not None and saga.state == "RUNNING"
    (third,) = starts(d)
    assert third.request.trials == 1
    progress = [s.message for s in d.sends if isinstance(s.message, sg.CampaignTrialEnded)]
    assert [(p.done, p.running, p.failed) for p in progress] == [(0, 1, 1)]


def test_when_every_child_has_ended_the_report_runs_then_the_campaign_completes() -> None:
    saga, _ = begin()
    saga, ds = play(saga, ended(1, 0.8), ended(2, 0.2), ended(3, state="ROLLED_BACK"), ended(4, 0.5))
    assert not [s for s in ds[-1].sends if isinstance(s.message, st.ReportCampaign)]  # child 5 still runs
    saga, (last,) = play(saga, ended(5, -0.1))
    (report,) = [s.message for s in last.sends if isinstance(s.message, st.ReportCampaign)]
    assert [o.trial for o in report.outcomes] == [1, 2, 3, 4, 5]
    assert report.request == SPEC
    reply = replies.success("campaign_report", CAMPAIGN, "report", 1)
    saga, (done,) = play(saga, reply)
    assert saga is not None and saga.state == "COMPLETED"
    assert [s.message.TYPE for s in done.sends] == ["sagas.StepCompleted", "sagas.SagaCompleted"]


def test_a_notice_for_no_running_child_changes_nothing() -> None:
    saga, _ = begin()
    saga, (_d1, d2, d3) = play(saga, ended(1, 0.8), ended(1, 0.8), ended(5, 0.8))
    assert d2.note.startswith("no running child") and d3.note.startswith("no running child")
    assert not d2.sends and not d3.sends


def test_cancelling_a_campaign_cancels_its_running_children_and_ends_once_they_have() -> None:
    saga, _ = begin()
    saga, (c,) = play(saga, sg.CancelSaga(saga_id=CAMPAIGN, reason="enough"))
    assert saga is not None and saga.state == "COMPENSATING"
    cancels = [s for s in c.sends if isinstance(s, ToOrchestrator) and isinstance(s.message, sg.CancelSaga)]
    assert sorted(s.about for s in cancels) == sorted([child(1), child(2)])
    saga, (d1,) = play(saga, ended(1, state="ROLLED_BACK"))
    assert saga is not None and saga.state == "COMPENSATING" and not starts(d1)
    saga, (_d2,) = play(saga, ended(2, state="ROLLED_BACK"))
    assert saga is not None and saga.state == "ROLLED_BACK"


def test_a_child_tells_its_campaign_when_it_ends_with_its_out_of_sample_figures() -> None:
    request = ResearchRequest(dataset="sp500", trials=3)
    kid = child(1)
    start = sg.StartResearch(saga_id=kid, request=request, parent=CAMPAIGN)
    steps = [replies.success(k, kid, k, 1) for k in ("reasoning", "codegen", "ml", "backtest")]
    saga, ds = play(None, start, *steps)
    assert saga is not None and saga.state == "COMPLETED"
    (notice,) = [s for s in ds[-1].sends if isinstance(s, ToOrchestrator)]
    assert notice.about == CAMPAIGN and isinstance(notice.message, sg.ChildSagaEnded)
    assert notice.message.child_id == kid and notice.message.state == "COMPLETED"
    assert all(k.startswith("out_of_sample.") for k in notice.message.metrics)
    (out,) = [o for o in wired(ds[-1], "mx") if isinstance(o.envelope.message, sg.ChildSagaEnded)]
    assert out.stream == "t:evt:orchestrator"  # only the orchestrator may write there
    assert all(not isinstance(s, ToOrchestrator) for d in ds[:-1] for s in d.sends)


def test_a_refused_child_is_reported_to_its_campaign_as_rejected() -> None:
    kid = child(1)
    start = sg.StartResearch(
        saga_id=kid, request=ResearchRequest(dataset="sp500"), parent=CAMPAIGN, workflow_version=99
    )
    saga, (d,) = play(None, start)
    assert saga is None
    (notice,) = [s.message for s in d.sends if isinstance(s.message, sg.ChildSagaEnded)]
    assert notice.state == "REJECTED" and "unknown workflow" in (notice.error or "")


def test_a_campaign_cannot_be_started_as_research() -> None:
    saga, (d,) = play(
        None, sg.StartResearch(saga_id=CAMPAIGN, workflow="campaign", request=ResearchRequest(dataset="sp500"))
    )
    assert saga is None and "StartCampaign" in d.note


def test_a_childs_end_is_written_to_its_campaigns_outbox_which_is_published_again_if_redis_forgets() -> None:
    """The relay re-publishes the outbox of every saga not ended: the child has ended when it
    tells its campaign, the campaign has not, so the notice is kept in the campaign's outbox."""
    from alphasaga_contracts import Streams
    from alphasaga_orchestrator.plan import Plan
    from alphasaga_orchestrator.repository import SagaRepository

    kid = child(1)
    start = sg.StartResearch(saga_id=kid, request=ResearchRequest(dataset="sp500"), parent=CAMPAIGN)
    steps = [replies.success(k, kid, k, 1) for k in ("reasoning", "codegen", "ml")]
    saga, _ = play(None, start, *steps)
    assert saga is not None
    plan = Plan(SagaRepository(store=None), Streams("t"))  # type: ignore[arg-type]
    plan.before(kid, saga)
    last = replies.success("backtest", kid, "backtest", 1)
    incoming = envelope_for(last, correlation_id=str(kid), message_id="last")
    plan.add(kid, incoming, decide(saga, incoming, CTX), "")
    where = {row.type: stream for stream, _, _, row in plan.events if stream.startswith("outbox:")}
    assert where["orchestrator.ChildSagaEnded"] == f"outbox:{CAMPAIGN}"
    assert where["sagas.SagaCompleted"] == f"outbox:{kid}"
