"""Workflow definitions as data."""

from __future__ import annotations

from pathlib import Path

import pytest

from alphasaga_contracts import steps as st
from alphasaga_saga.workflow import (
    DEFAULT_WORKFLOWS,
    RESEARCH_V1,
    WorkflowFileError,
    load_workflows,
    parse_workflows,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "workflows.example.yaml"


def test_the_example_file_is_the_built_in_research_workflow() -> None:
    assert load_workflows(EXAMPLE).latest("research") == RESEARCH_V1
    assert load_workflows(None) is DEFAULT_WORKFLOWS


def test_a_file_step_gets_its_messages_from_its_service() -> None:
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
    assert step.command is st.FormHypothesis and step.compensate is st.CompensateHypothesis
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
