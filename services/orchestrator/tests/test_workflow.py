"""Workflow definitions as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from alphasaga_contracts import steps as st
from alphasaga_saga.workflow import (
    BUILT_IN,
    DEFAULT_WORKFLOWS,
    RESEARCH_V1,
    RetryPolicy,
    WorkflowFileError,
    load_workflows,
    parse_workflows,
)


def test_the_built_in_workflows_are_the_packaged_file_and_research_v1_is_unchanged() -> None:
    assert load_workflows(BUILT_IN).all() == DEFAULT_WORKFLOWS.all()
    assert load_workflows(None) is DEFAULT_WORKFLOWS
    assert DEFAULT_WORKFLOWS.get("research", 1) == RESEARCH_V1
    assert [(s.name, s.kind, s.timeout_s) for s in RESEARCH_V1.steps] == [
        ("reasoning", st.REASONING, 300),
        ("codegen", st.CODEGEN, 300),
        ("ml", st.ML, 900),
        ("backtest", st.BACKTEST, 300),
    ]
    assert all(
        s.retry == RetryPolicy() and s.compensation_retry == RetryPolicy(max_attempts=5) for s in RESEARCH_V1.steps
    )
    assert [s.queue for s in RESEARCH_V1.steps] == ["reasoning", "codegen", "ml", "backtest"]


def test_a_file_step_gets_its_messages_from_its_kind() -> None:
    registry = parse_workflows({"workflows": [{"name": "quick", "version": 1, "steps": [{"kind": "ml"}]}]})
    step = registry.get("quick", 1).step("ml")
    assert step.kind is st.ML and step.command is st.TrainModel and step.succeeded is st.ModelTrained
    assert step.command_inputs() == ["request", "hypothesis", "dataset", "signals", "model_kind"]


def test_a_file_of_before_step_kinds_names_the_service_of_the_one_kind() -> None:
    registry = parse_workflows(
        {
            "workflows": [
                {
                    "name": "quick",
                    "version": 3,
                    "steps": [
                        {"name": "think", "service": "reasoning", "timeout_s": 5, "retry": {"max_attempts": 1}},
                    ],
                }
            ]
        }
    )
    step = registry.get("quick", 3).step("think")
    assert step.kind is st.REASONING and step.command is st.FormHypothesis and step.service == "reasoning"
    assert step.timeout_s == 5 and step.retry.max_attempts == 1
    assert step.command_inputs() == ["request"]


def test_newest_version_is_used_for_new_sagas() -> None:
    doc = {"workflows": [{"name": "research", "version": v, "steps": [{"service": "reasoning"}]} for v in (1, 2)]}
    assert parse_workflows(doc).latest("research").version == 2


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"workflows": []}, "no workflows"),
        ({"workflows": [{"name": "w", "version": 1, "steps": []}]}, "has no steps"),
        ({"workflows": [{"name": "w", "version": 1, "steps": [{"service": "astrology"}]}]}, "unknown service"),
        ({"workflows": [{"name": "w", "version": 1, "steps": [{"kind": "astrology"}]}]}, "no step kind 'astrology'"),
        (
            {"workflows": [{"name": "w", "version": 1, "steps": [{"kind": "ml", "service": "codegen"}]}]},
            "kind ml runs in ml, not codegen",
        ),
        ({"workflows": [{"name": "w", "version": 1, "steps": [{"service": "orchestrator"}]}]}, "runs no saga step"),
        (
            {"workflows": [{"name": "w", "version": 1, "steps": [{"service": "ml", "retry": {"tries": 2}}]}]},
            "unknown retry setting",
        ),
    ],
)
def test_a_bad_workflow_file_is_a_clear_error(document: dict[str, object], message: str) -> None:
    with pytest.raises(WorkflowFileError, match=message):
        parse_workflows(document)


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowFileError, match="cannot read workflows"):
        load_workflows(tmp_path / "missing.yaml")
