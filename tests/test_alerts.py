"""The alert rules: valid, each with a runbook section, and each proven by `promtool test
rules` to fire on a series that should page and to stay quiet on one that should not."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.support.helpers import ROOT

RULES = ROOT / "infra" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "infra" / "prometheus" / "alerts_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# What issues #14 and #29 ask the alerts to cover, by the rule that does.
REQUIRED = {
    "StreamLagGrowing",
    "PendingEntryStuck",
    "GroupWithoutConsumers",
    "DeadLetters",
    "CompensationFailed",
    "SagaDurationBudgetBurnFast",
    "SagaDurationBudgetBurnSlow",
    "StepErrorRatio",
    "RelayLagging",
    "TimerBacklog",
    "OrchestratorAbsent",
    "EventStoreSlow",
    "SandboxRuleViolations",
    # issue #29: Redis forgot
    "RedisForgot",
    "ConsumerGroupsRecreated",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
    return path


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to dashes."""
    heads = re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in heads}


def test_every_rule_names_its_runbook_section_and_the_required_ones_exist() -> None:
    found = rules()
    names = {r["alert"] for r in found}
    assert len(found) >= 12 and names >= REQUIRED, REQUIRED - names
    sections = anchors(RUNBOOKS.read_text())
    for r in found:
        url = r["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/runbooks.md" and anchor in sections, f"{r['alert']}: {url}"


def test_the_rules_and_the_config_pass_promtool_check() -> None:
    tool = promtool()
    for args in (["check", "rules", str(RULES)], ["check", "config", str(RULES.parent / "prometheus.yml")]):
        done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_each_rule_fires_on_a_series_that_should_page_and_stays_quiet_otherwise() -> None:
    tool = promtool()
    cases = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for name in {r["alert"] for r in rules()}:
        expectations = [c["exp_alerts"] for c in cases if c["alertname"] == name]
        assert any(expectations), f"{name}: no case where it fires"
        assert any(e == [] for e in expectations), f"{name}: no case where it stays quiet"
    done = subprocess.run(
        [tool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
