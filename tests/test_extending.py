"""docs/extending.md, run as it stands, so that the walkthrough cannot rot: its `risk` kind
is applied to real orchestrator and simulated-worker processes (tests/support/walkthrough.py)
and sagas run through it; its domain code, handler and test run under pytest; its code
passes the linter; its file lists are counted and within the issue's bounds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import yaml

from alphasaga_contracts import Streams
from alphasaga_saga.workflow import BUILT_IN
from tests.support.harness import Harness
from tests.support.helpers import ROOT
from tests.support.walkthrough import FOLDER

PAGE = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"<!-- extending-test: ([\w-]+) -->\n```\w+\n(.*?)```", re.S)
TABLE = re.compile(r"<!-- extending-test: files (\w+) -->\n((?:\|.*\n)+)")
MOST_FILES = {"kind": 5, "service": 8}  # issue #22: a kind in an existing service, a new service
RISK = 'StepKind("risk", Service.BACKTEST, CheckRisk, RiskChecked)'
WORKFLOW = "research_with_risk"


def blocks() -> dict[str, str]:
    return dict(BLOCK.findall(PAGE.read_text()))


def files(walkthrough: str) -> list[tuple[str, str]]:
    (table,) = (t for name, t in TABLE.findall(PAGE.read_text()) if name == walkthrough)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()[2:]]
    return [(path.strip("`"), change) for path, change, _ in rows]


def walkthrough(tmp_path: Path, *parts: str, own_stream: bool = False) -> dict[str, str]:
    """A folder with the page's blocks that processes apply at start-up; their environment."""
    folder = tmp_path / ("walkthrough-apart" if own_stream else "walkthrough")
    folder.mkdir()
    page = blocks()
    contract = page["contract"]
    if own_stream:
        assert RISK in contract
        contract = contract.replace(RISK, RISK[:-1] + ", own_stream=True)")
    (folder / "contract.py").write_text(contract)
    for part in parts:
        (folder / f"{part}.py").write_text(page[part])
    (folder / "sitecustomize.py").write_text("from tests.support import walkthrough\n\nwalkthrough.apply()\n")
    return {FOLDER: str(folder), "PYTHONPATH": f"{folder}:{ROOT}"}


def workflows(h: Harness) -> Path:
    """The built-in workflows and the page's."""
    built_in = yaml.safe_load(BUILT_IN.read_text())["workflows"]
    return h.workflows_file(*built_in, *yaml.safe_load(blocks()["workflow"]))


def test_each_walkthrough_touches_no_more_files_than_it_says_and_the_issue_allows() -> None:
    text = PAGE.read_text()
    for name, most in MOST_FILES.items():
        listed = files(name)
        assert len(listed) <= most, (name, listed)
        assert f"**Files touched: {len(listed)}.**" in text, name
        for path, change in listed:
            assert change in {"new", "changed"}, path
            assert (ROOT / path).exists() == (change == "changed"), f"{path} is said to be {change}"
    # A new service's files are where an existing service keeps its own.
    new_service = [path for path, change in files("service") if change == "new"]
    assert len(new_service) == 5
    for path in new_service:
        assert (ROOT / path.replace("report", "backtest")).exists(), path


def test_the_walkthroughs_code_passes_the_linter(tmp_path: Path) -> None:
    """Each block as the file it goes to would hold it (a contract section in the contract
    module's namespace: the names it uses are those the module imports)."""
    page = blocks()
    steps_names = "from alphasaga_contracts.steps import *  # noqa: F403\n\n"
    checked = {
        "risk_contract.py": steps_names + page["contract"],
        "risk.py": page["domain"],
        "test_risk.py": page["test"],
        "report_contract.py": steps_names + page["service-contract"],
        "report_init.py": page["service-init"],
        "report_main.py": page["service-main"],
        "report_service.py": page["service-module"],
        "test_report.py": page["service-test"],
    }
    for name, code in checked.items():
        (tmp_path / name).write_text(code)
    ruff = [sys.executable, "-m", "ruff", "--config", str(ROOT / "pyproject.toml")]
    lint = subprocess.run([*ruff, "check", "--ignore", "F405", str(tmp_path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    form = subprocess.run([*ruff, "format", "--check", "--diff", str(tmp_path)], capture_output=True, text=True)
    assert form.returncode == 0, form.stdout
    project = tomllib.loads(page["service-pyproject"])["project"]
    assert project["name"] == "alphasaga-report" and "alphasaga-shared" in project["dependencies"]
    assert page["service-enum"].strip() == 'REPORT = "report"'


def test_the_walkthroughs_domain_code_handler_and_test_pass(tmp_path: Path) -> None:
    env = walkthrough(tmp_path, "domain", "service")
    test_file = tmp_path / "test_risk.py"
    test_file.write_text(blocks()["test"])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            str(test_file),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout, run.stdout


async def outbox_streams(h: Harness, saga: uuid.UUID) -> list[tuple[str, str]]:
    """(type, stream) of each message the saga sent."""
    rows = await h.store.read_stream(f"outbox:{saga}")
    return [(r.type, r.metadata["stream"]) for r in rows]


async def commanded(h: Harness, saga: uuid.UUID) -> list[str]:
    return [e.data["step"] for e in await h.events(saga) if e.type.endswith("StepCommanded")]


async def test_a_saga_runs_through_the_new_kind_and_rolls_back_when_it_fails(h: Harness, tmp_path: Path) -> None:
    env = walkthrough(tmp_path)
    wf = workflows(h)
    o, s = h.orchestrator(wf, **env), h.sim(env)
    await h.ready(o, s)
    (saga,) = await h.start(workflow=WORKFLOW)
    assert (await h.wait_terminal([saga]))[saga] == "COMPLETED"
    assert await commanded(h, saga) == ["reasoning", "codegen", "ml", "backtest", "risk"]
    started, *_, risk_done, completed = await h.events(saga)
    assert started.data["workflow"] == WORKFLOW and completed.type.endswith(".Completed")
    assert risk_done.data["step"] == "risk" and set(risk_done.data["outputs"]) == {"within_limits", "breaches"}
    streams = Streams(h.settings.namespace)
    assert ("backtest.CheckRisk", streams.commands("backtest")) in await outbox_streams(h, saga)
    (plain,) = await h.start()  # research itself is as it was
    assert (await h.wait_terminal([plain]))[plain] == "COMPLETED"
    assert await commanded(h, plain) == ["reasoning", "codegen", "ml", "backtest"]
    assert await h.violations([saga, plain]) == {}
    s.stop()

    failing = h.sim(env, fail_always=["risk"])
    await h.ready(failing)
    (saga,) = await h.start(workflow=WORKFLOW)
    assert (await h.wait_terminal([saga]))[saga] == "ROLLED_BACK"
    events = await h.events(saga)
    assert [e.data["step"] for e in events if e.type.endswith("StepCompensated")] == [
        "backtest",
        "ml",
        "codegen",
        "reasoning",
    ]
    compensations = [stream for t, stream in await outbox_streams(h, saga) if t == "steps.CompensateStep"]
    assert compensations == [streams.commands(q) for q in ("backtest", "ml", "codegen", "reasoning")]
    assert await h.violations([saga]) == {}


async def test_a_kind_with_a_stream_of_its_own_gets_its_commands_there(h: Harness, tmp_path: Path) -> None:
    env = walkthrough(tmp_path, own_stream=True)
    o, s = h.orchestrator(workflows(h), **env), h.sim(env)
    await h.ready(o, s)
    (saga,) = await h.start(workflow=WORKFLOW)
    assert (await h.wait_terminal([saga]))[saga] == "COMPLETED"
    sent: list[Any] = await outbox_streams(h, saga)
    assert ("backtest.CheckRisk", Streams(h.settings.namespace).commands("backtest.risk")) in sent
    assert ("backtest.RunBacktest", Streams(h.settings.namespace).commands("backtest")) in sent
    assert await h.violations([saga]) == {}
