"""The one list of services and step kinds (``steps.Service``, ``steps.KINDS``), and the
former type names that still decode."""

from __future__ import annotations

import json
import uuid

import pytest

from alphasaga_contracts import KINDS, Service, Streams, message_class, registered_types
from alphasaga_contracts import steps as st
from alphasaga_contracts.envelope import alias_types
from alphasaga_contracts.steps import FORMER_TYPES, StepKind, StepKinds

SAGA = uuid.UUID("00000000-0000-4000-8000-000000000001")


def test_every_worker_service_hosts_a_kind_and_the_orchestrator_none() -> None:
    assert set(KINDS.services()) == set(Service) - {Service.ORCHESTRATOR}
    assert KINDS.hosted_by(Service.ORCHESTRATOR) == ()
    # The research workflow's four kinds keep their service's stream: the stream names did not change.
    research = (st.REASONING, st.CODEGEN, st.ML, st.BACKTEST)
    assert [k.queue for k in research] == ["reasoning", "codegen", "ml", "backtest"]
    assert (
        KINDS["ml"] is st.ML and KINDS.of_command(st.TrainModel) is st.ML and KINDS.of_result(st.ModelTrained) is st.ML
    )


def test_a_kind_scales_with_its_service_or_apart_on_a_stream_of_its_own() -> None:
    together = StepKind("think", Service.REASONING, st.FormHypothesis, st.HypothesisFormed)
    apart = StepKind("think", Service.REASONING, st.FormHypothesis, st.HypothesisFormed, own_stream=True)
    streams = Streams("t")
    assert streams.commands(together.queue) == "t:cmd:reasoning"
    assert streams.commands(apart.queue) == "t:cmd:reasoning.think"
    kinds = StepKinds()
    kinds.add(apart)
    assert kinds.queues(Service.REASONING) == ("reasoning.think",) and kinds.queues(Service.ML) == ()


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        (StepKind("ml", Service.ML, st.TrainModel, st.ModelTrained), "declared twice"),
        (StepKind("Bad", Service.ML, st.TrainModel, st.ModelTrained), "lower-case"),
        (StepKind("plan", Service.ORCHESTRATOR, st.TrainModel, st.ModelTrained), "not a worker service"),
        (StepKind("plan", Service.CODEGEN, st.TrainModel, st.ModelTrained), "does not start with its service"),
        (StepKind("again", Service.ML, st.TrainModel, st.ModelTrained), "another kind's"),
    ],
)
def test_the_registry_refuses_a_kind_it_could_not_route(
    kind: StepKind[st.TrainModel, st.ModelTrained], problem: str
) -> None:
    kinds = StepKinds()
    kinds.add(StepKind("ml", Service.ML, st.TrainModel, st.ModelTrained))
    with pytest.raises(ValueError, match=problem):
        kinds.add(kind)
    with pytest.raises(KeyError, match="no step kind 'risk'"):
        kinds["risk"]


def test_failure_and_compensation_name_their_kind_on_the_wire() -> None:
    compensate = st.CompensateStep(saga_id=SAGA, step="ml", kind="ml", attempt=2)
    wire = {"saga_id": str(SAGA), "step": "ml", "kind": "ml", "attempt": 2, "deadline": None}
    assert json.loads(compensate.model_dump_json()) == wire
    with pytest.raises(ValueError, match="kind"):
        st.StepFailed(saga_id=SAGA, step="ml", attempt=1, error_kind="internal", error="x")  # type: ignore[call-arg]


@pytest.mark.parametrize("former", sorted(FORMER_TYPES))
def test_a_former_type_name_still_decodes_as_the_generic_message_of_its_kind(former: str) -> None:
    generic, kind = FORMER_TYPES[former]
    body = {"saga_id": str(SAGA), "step": "some_step", "attempt": 2}
    if generic is st.StepFailed:
        body |= {"error_kind": "internal", "error": "boom", "retryable": True}
    if generic is st.CompensationFailed:
        body |= {"error": "disk on fire"}
    cls = message_class(former)
    message = cls.model_validate_json(json.dumps(body))
    assert isinstance(message, generic) and message.kind == kind and former == message.TYPE
    assert cls.ALIAS_OF == generic.TYPE and message_class(former) is cls
    assert former.split(".")[0] == KINDS[kind].service
    with pytest.raises(ValueError, match="kind"):  # a former name meant one kind
        cls.model_validate({**body, "kind": "something_else"})


def test_former_names_are_listed_apart_from_the_current_types() -> None:
    assert set(alias_types()) == set(FORMER_TYPES)
    assert not set(FORMER_TYPES) & set(registered_types())
    assert set(alias_types().values()) == {g.TYPE for g, _ in FORMER_TYPES.values()}
