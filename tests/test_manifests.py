"""One list of services and step kinds (``alphasaga_contracts.steps``): every other list is
written from it (``make manifests``, infra/manifests.py), derived from it when used, or
checked against it here."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from typing import Any

import pytest

from alphasaga_cli.stack import SERVICES as STACK_SERVICES
from alphasaga_contracts import KINDS, Service
from tests.support.helpers import ROOT

GENERATOR = ROOT / "infra" / "manifests.py"


def generator() -> dict[str, Any]:
    return runpy.run_path(str(GENERATOR))


def test_the_generated_files_are_what_their_generator_writes() -> None:
    drifted = [
        str(path.relative_to(ROOT))
        for path, text in generator()["generate"]().items()
        if not path.exists() or path.read_text() != text
    ]
    assert drifted == [], f"run `make manifests`: {drifted}"


def test_the_makefile_and_the_local_stack_take_the_services_from_the_list() -> None:
    names = [s.value for s in Service]
    out = subprocess.run([sys.executable, str(GENERATOR), "services"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == names
    assert "SERVICES = $(shell $(RUN) python infra/manifests.py services)" in (ROOT / "Makefile").read_text()
    assert list(STACK_SERVICES) == names


def test_every_service_is_a_workspace_member_the_tools_know() -> None:
    """What cannot be derived is checked: each service (and the api) is a package under
    services/ that runs as ``python -m alphasaga_<name>``, and the workspace lists it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
    assert members == sorted([*(s.value for s in Service), "api"])
    mypy_path = project["tool"]["mypy"]["mypy_path"].split(":")
    for name in members:
        assert (ROOT / "services" / name / "src" / f"alphasaga_{name}" / "__main__.py").exists(), name
        assert f"alphasaga-{name}" in project["project"]["dependencies"], name
        assert project["tool"]["uv"]["sources"][f"alphasaga-{name}"] == {"workspace": True}, name
        assert f"services/{name}/src" in mypy_path, name


@dataclass(frozen=True)
class FakeKind:
    name: str
    service: Service
    queue: str


class FakeKinds:
    """The registry's interface the generator uses, holding a kind with a stream of its own."""

    def __init__(self, *kinds: FakeKind) -> None:
        self.kinds = kinds

    def services(self) -> tuple[Service, ...]:
        return tuple(dict.fromkeys(k.service for k in self.kinds))

    def queues(self, service: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k.queue for k in self.kinds if k.service == service))

    def hosted_by(self, service: str) -> tuple[FakeKind, ...]:
        return tuple(k for k in self.kinds if k.service == service)


def test_a_kind_with_a_stream_of_its_own_gets_workers_and_scaling_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    module = generator()
    kinds = FakeKinds(
        FakeKind("backtest", Service.BACKTEST, "backtest"),
        FakeKind("risk_check", Service.BACKTEST, "backtest.risk_check"),
    )
    monkeypatch.setitem(module["worker_groups"].__globals__, "KINDS", kinds)
    workers, keda = module["workers_yaml"](), module["keda_yaml"]()
    assert re.findall(r"(?m)^  name: (\S+)$", workers) == ["backtest", "backtest-risk-check"]
    assert re.findall(r'ALPHASAGA_WORKER_KINDS, value: "([^"]+)"', workers) == ["backtest", "risk_check"]
    assert "image: localhost/alphasaga/backtest:latest" in workers.split("---")[-1]
    streams = re.findall(r'stream: "([^"]+)", consumerGroup: (\w+), lagCount', keda)
    assert streams == [
        (f"alphasaga:cmd:{queue}{lane}", "backtest")
        for queue in ("backtest", "backtest.risk_check")
        for lane in (":express", "")
    ], "each stream's two lanes"
    assert KINDS.queues(Service.BACKTEST) == ("backtest",)  # the real registry is untouched


def test_the_orchestrators_memory_limit_follows_its_caches_settings() -> None:
    memory_mi, part_mi = generator()["orchestrator_memory_mi"], generator()["part_memory_mi"]
    empty, default, large = memory_mi(0, 0), memory_mi(), memory_mi(20_000, 20_000)
    assert empty < default < large
    assert default % 64 == 0
    # The production layout: the orchestrator holds the saga cache, the projector its own,
    # the relay none (docs/decisions/0029).
    orchestrator, projector, relay = part_mi("orchestrator"), part_mi("projector"), part_mi("relay")
    assert (orchestrator, projector, relay) == (memory_mi(projection_cache=0), memory_mi(saga_cache=0), empty)
    written = (ROOT / "infra/k8s/base/orchestrator.yaml").read_text()
    assert f"memory: {orchestrator}Mi}}" in written
    parts = (ROOT / "infra/k8s/base/orchestrator-parts.yaml").read_text()
    assert f"memory: {projector}Mi}}" in parts and f"memory: {relay}Mi}}" in parts
    compose = (ROOT / "docker-compose.yml").read_text()
    assert all(f"mem_limit: {mi}m" in compose for mi in (orchestrator, projector, relay))
