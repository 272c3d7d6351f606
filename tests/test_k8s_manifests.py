"""The Kubernetes manifests (infra/k8s): every overlay renders with kustomize and passes
the Kubernetes schemas strictly; then what no schema knows is checked against the code:
the streams and groups KEDA watches (from the step kinds), the probe paths, the settings,
the stop deadline, the workflows (the built-in ones, copied)."""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from alphasaga_api.settings import ApiSettings
from alphasaga_codegen.service import SandboxSettings
from alphasaga_contracts import KINDS, Service, Streams
from alphasaga_orchestrator.settings import OrchestratorSettings
from alphasaga_reasoning.service import LLMSettings
from alphasaga_saga.workflow import BUILT_IN, load_workflows
from alphasaga_shared import runner
from alphasaga_shared.config import Settings
from alphasaga_shared.health import HealthServer
from alphasaga_shared.outbox import RelaySettings
from alphasaga_shared.worker import WorkerSettings
from tests.support.helpers import ROOT

K8S = ROOT / "infra" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.32.0"
# Kinds the Kubernetes schemas do not cover; their fields are checked below instead.
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
# What a stopping service may take at worst: its background tasks, the bus's own tasks,
# the broker and the database pool each get their deadline, one after the other.
STOP_DEADLINE_S = runner.stop_deadline_s(Settings())
# Settings classes by the service that reads them, beside the shared ones.
SERVICE_SETTINGS: dict[str, list[type[BaseSettings]]] = {
    **{s: [WorkerSettings] for s in KINDS.services()},
    Service.CODEGEN: [WorkerSettings, SandboxSettings],
    Service.REASONING: [WorkerSettings, LLMSettings],
    Service.ORCHESTRATOR: [OrchestratorSettings, RelaySettings],
    "api": [ApiSettings],
}
# The processes that read one worker command stream each: the service, and the stream of
# each kind that has one of its own (named <service>-<kind>).
WORKER_GROUPS = {
    queue.replace(".", "-").replace("_", "-"): (s, queue) for s in KINDS.services() for queue in KINDS.queues(s)
}
# The deployables: the orchestrator, the workers and the HTTP API.
DEPLOYABLES = {Service.ORCHESTRATOR.value, "api", *WORKER_GROUPS}

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: cannot render")


@functools.cache
def render(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects, rendered once for all the tests (the tests only read them)."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def setting_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", "")).upper()
    return {prefix + name.upper() for name in settings.model_fields}


def env_names(container: dict[str, Any], docs: list[dict[str, Any]]) -> set[str]:
    """Every variable the container gets: its own env and the keys of what it takes whole."""
    names = {e["name"] for e in container.get("env", [])}
    config_maps, secrets = of_kind(docs, "ConfigMap"), of_kind(docs, "Secret")
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(config_maps[source["configMapRef"]["name"]]["data"])
        elif "secretRef" in source and source["secretRef"]["name"] in secrets:
            secret = secrets[source["secretRef"]["name"]]
            names |= set(secret.get("stringData", {})) | set(secret.get("data", {}))
    return names


def served_paths(paths: set[str]) -> dict[str, int]:
    """The status the real health server gives each path (404: not one of its routes)."""

    async def probe() -> dict[str, int]:
        server = HealthServer({})
        server.started = True
        port = await server.start("127.0.0.1", 0)
        try:
            return {p: await asyncio.to_thread(status_of, f"http://127.0.0.1:{port}{p}") for p in paths}
        finally:
            await server.stop()

    return asyncio.run(probe())


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_there_are_dev_and_prod_overlays() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_passes_the_kubernetes_schemas_strictly(overlay: str) -> None:
    docs = render(overlay)
    checked = 0
    for doc in docs:
        if doc["kind"] in KEDA_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}") from None
        checked += 1
    assert checked >= len(DEPLOYABLES) + 3  # Deployments, PDB, ConfigMaps at least


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_worker_scales_on_the_stream_and_group_it_really_reads(overlay: str) -> None:
    docs = render(overlay)
    namespace = of_kind(docs, "ConfigMap")["alphasaga-settings"]["data"]["ALPHASAGA_NAMESPACE"]
    streams = Streams(namespace)
    scaled = of_kind(docs, "ScaledObject")
    assert set(scaled) == set(WORKER_GROUPS)
    auth = of_kind(docs, "TriggerAuthentication")
    deployments = of_kind(docs, "Deployment")
    for name, (service, queue) in WORKER_GROUPS.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"redis-streams"}
        # What the worker subscribes to: alphasaga_shared.worker.run_worker, group = service;
        # a backlog on either lane scales it.
        assert {t["metadata"]["stream"] for t in triggers} == set(streams.lanes(streams.commands(queue)))
        for t in triggers:
            assert t["metadata"]["consumerGroup"] == service.value
            assert t["authenticationRef"]["name"] in auth
        assert any("lagCount" in t["metadata"] for t in triggers), name
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["image"].rsplit("/", 1)[1].split(":")[0] == service.value
        chosen = {e["name"]: e["value"] for e in container.get("env", [])}.get("ALPHASAGA_WORKER_KINDS")
        if len(KINDS.queues(service)) > 1:  # each group serves only its stream's kinds
            assert chosen == ",".join(k.name for k in KINDS.hosted_by(service) if k.queue == queue)
        else:
            assert chosen is None
    for worker in (Service.ML, Service.BACKTEST):
        assert scaled[worker.value]["spec"]["minReplicaCount"] == 0, worker


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_probe_real_paths_set_real_settings_and_outlast_the_stop(overlay: str) -> None:
    docs = render(overlay)
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == DEPLOYABLES
    probe_paths: set[str] = set()
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > STOP_DEADLINE_S, name
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"requests", "limits"} <= set(container["resources"])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe_paths.add(container[probe]["httpGet"]["path"])
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        service = WORKER_GROUPS[name][0] if name in WORKER_GROUPS else name
        known = setting_names(Settings).union(*(setting_names(s) for s in SERVICE_SETTINGS.get(service, [])))
        unknown = env_names(container, docs) - known
        assert not unknown, f"{name} sets variables no settings class reads: {sorted(unknown)}"
    statuses = served_paths(probe_paths)
    assert all(code == 200 for code in statuses.values()), statuses


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_orchestrator_keeps_a_replica_through_disruptions_and_loads_its_workflows(
    overlay: str, tmp_path: Path
) -> None:
    docs = render(overlay)
    orchestrator = of_kind(docs, "Deployment")["orchestrator"]
    assert orchestrator["spec"]["replicas"] == 2
    (pdb,) = of_kind(docs, "PodDisruptionBudget").values()
    assert pdb["spec"]["selector"]["matchLabels"] == orchestrator["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] == 1
    # The workflow file the orchestrator is pointed at parses with its own loader.
    (config_map,) = (c for n, c in of_kind(docs, "ConfigMap").items() if n.startswith("alphasaga-workflows"))
    assert config_map["data"]["workflows.yaml"] == BUILT_IN.read_text(), "run `make manifests`"
    path = tmp_path / "workflows.yaml"
    path.write_text(config_map["data"]["workflows.yaml"])
    assert load_workflows(path).get("research", 1).name == "research"
