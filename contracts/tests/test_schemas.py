"""The committed JSON Schemas must match the models (``make schemas`` regenerates them)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from alphasaga_contracts import KINDS, Streams, message_class, registered_types
from alphasaga_contracts.research import ResearchRequest
from alphasaga_contracts.schema_export import SCHEMA_DIR, render, schema_documents


def test_committed_schemas_match_the_models() -> None:
    wanted = schema_documents()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(wanted), "schema files differ from the registered types: run `make schemas`"
    drifted = [name for name, schema in wanted.items() if on_disk[name] != render(schema)]
    assert drifted == [], f"schemas drifted from the models: {drifted} (run `make schemas`)"


def test_every_kind_has_its_command_and_result_and_failure_and_compensation_are_generic() -> None:
    types = registered_types()
    for kind in KINDS:
        assert types[kind.command.TYPE] is kind.command and types[kind.result.TYPE] is kind.result
    for service in KINDS.services():  # a worker service's types are its kinds' commands and results, no more
        owned = {t for t in types if t.startswith(f"{service}.")}
        assert owned == {cls.TYPE for k in KINDS.hosted_by(service) for cls in (k.command, k.result)}
    generic = {t for t in types if t.startswith("steps.")}
    assert generic == {"steps.StepFailed", "steps.CompensateStep", "steps.StepCompensated", "steps.CompensationFailed"}
    assert "orchestrator.StartResearch" in types and "orchestrator.CancelSaga" in types
    assert message_class("sagas.SagaCompleted").TYPE == "sagas.SagaCompleted"


def test_request_needs_exactly_one_data_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ResearchRequest()
    with pytest.raises(ValidationError, match="exactly one"):
        ResearchRequest(dataset="sp500", data_path="/tmp/x.csv")
    with pytest.raises(ValidationError, match="unknown dataset"):
        ResearchRequest(dataset="nope")
    assert ResearchRequest(dataset="sp500").objective == "auto"


def test_schema_rejects_unknown_fields() -> None:
    schema = json.loads((SCHEMA_DIR / "orchestrator.StartResearch.v1.json").read_text())
    assert schema["additionalProperties"] is False


def test_stream_names_carry_the_namespace() -> None:
    s = Streams("tenant1")
    assert s.commands("ml") == "tenant1:cmd:ml"
    assert s.events("ml") == "tenant1:evt:ml"
    assert s.sagas == "tenant1:evt:sagas"
    assert Streams.dead_letters(s.commands("ml")) == "tenant1:cmd:ml:dlq"
    assert Streams.source_of_dead_letters("tenant1:cmd:ml:dlq") == "tenant1:cmd:ml"
    with pytest.raises(ValueError):
        Streams("has space")
