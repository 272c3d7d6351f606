"""Which messages the orchestrator takes from which stream, for every registered type and
every kind (a new kind gets its rows by itself): Redis's ACL cannot say what a writer
adds, so this is the wall that keeps a front end from forging a step's result and a
worker from answering for another's kinds (issue #30)."""

from __future__ import annotations

from alphasaga_contracts import Service, Streams, registered_types
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.envelope import Message
from alphasaga_contracts.steps import KINDS
from alphasaga_orchestrator.admission import misplaced

STREAMS = Streams("adm")
COMMANDS = STREAMS.commands(Service.ORCHESTRATOR)


def instance(cls: type[Message], **fields: object) -> Message:
    return cls.model_construct(**fields)  # only the type matters here


def test_its_command_stream_takes_exactly_the_requests() -> None:
    taken = {name for name, cls in registered_types().items() if misplaced(STREAMS, COMMANDS, instance(cls)) is None}
    assert taken == {sg.StartResearch.TYPE, sg.StartCampaign.TYPE, sg.CancelSaga.TYPE}
    why = misplaced(STREAMS, COMMANDS, instance(st.StepFailed, kind="ml"))
    assert why == (
        f"steps.StepFailed is not a request: {COMMANDS} takes only StartResearch, StartCampaign and CancelSaga"
    )


def test_its_own_event_stream_takes_only_a_childs_end() -> None:
    """Only the orchestrator writes there (its ACL user), and only a child's end is read from it."""
    own = STREAMS.events(Service.ORCHESTRATOR)
    taken = {name for name, cls in registered_types().items() if misplaced(STREAMS, own, instance(cls)) is None}
    assert taken == {sg.ChildSagaEnded.TYPE}
    assert misplaced(STREAMS, COMMANDS, instance(sg.ChildSagaEnded)) is not None  # a front end cannot forge one


def test_a_workers_stream_takes_the_replies_of_its_kinds_and_nothing_else() -> None:
    for worker in KINDS.services():
        stream = STREAMS.events(worker)
        for kind in KINDS:
            mine = kind.service == worker
            replies = [instance(kind.result)] + [
                instance(cls, kind=kind.name) for cls in (st.StepFailed, st.StepCompensated, st.CompensationFailed)
            ]
            for reply in replies:
                why = misplaced(STREAMS, stream, reply)
                assert (why is None) == mine, (worker, kind.name, reply.TYPE, why)
                if not mine:
                    assert why == f"{reply.TYPE} answers kind {kind.name}, which {kind.service} hosts, not {worker}"
        for cls in (sg.StartResearch, sg.CancelSaga, sg.SagaCompleted, st.CompensateStep, *(k.command for k in KINDS)):
            assert misplaced(STREAMS, stream, instance(cls)) == f"{cls.TYPE} is not a step's reply"
        assert misplaced(STREAMS, stream, instance(st.StepFailed, kind="no_such_kind")) is not None


def test_streams_it_does_not_read_are_not_its_to_judge() -> None:
    for stream in (STREAMS.sagas, STREAMS.commands("ml"), "elsewhere:cmd:orchestrator"):
        assert misplaced(STREAMS, stream, instance(st.StepFailed, kind="ml")) is None
