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
from pydantic import BaseModel

from alphasaga_api.settings import ApiSettings
from alphasaga_codegen.service import SandboxSettings
from alphasaga_contracts import KINDS, Service, Streams
from alphasaga_orchestrator.settings import OrchestratorSettings
from alphasaga_reasoning.service import LLMSettings
from alphasaga_saga.workflow import BUILT_IN, load_workflows
from alphasaga_shared import runner
from alphasaga_shared.bus import subjects
from alphasaga_shared.config import ENV_PREFIX, Settings
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
SERVICE_SETTINGS: dict[str, list[type[BaseModel]]] = {
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
# The orchestrator's parts that run as Deployments of their own, from its image and with
# its login (docs/decisions/0029).
PARTS = {"relay", "projector"}
# The deployables: the orchestrator and its parts, the workers and the HTTP API.
DEPLOYABLES = {Service.ORCHESTRATOR.value, *PARTS, "api", *WORKER_GROUPS}

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


def setting_names(settings: type[Any]) -> set[str]:
    # Settings reads the environment itself (decision 0027); the others through pydantic-settings.
    prefix = str(getattr(settings, "model_config", {}).get("env_prefix", ENV_PREFIX)).upper()
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
        if "ALPHASAGA_BROKER_URL" in of_kind(docs, "ConfigMap")["alphasaga-settings"]["data"]:
            # On JetStream: the worker's durable consumers (alphasaga_shared.bus.subjects), one a lane.
            assert {t["type"] for t in triggers} == {"nats-jetstream"}
            lanes = streams.lanes(streams.commands(queue))
            assert {t["metadata"]["stream"] for t in triggers} == {subjects.place(s).stream for s in lanes}
            assert {t["metadata"]["consumer"] for t in triggers} == {subjects.durable(service.value, s) for s in lanes}
            for t in triggers:
                assert t["metadata"]["natsServerMonitoringEndpoint"].split(".")[0] in of_kind(docs, "Service")
            assert any("lagThreshold" in t["metadata"] for t in triggers), name
        else:
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
        service = login_of(deployment)
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
    budgets = of_kind(docs, "PodDisruptionBudget")
    assert set(budgets) == {"orchestrator", *PARTS}  # a drain keeps one of each, and one relay sends
    deployments = of_kind(docs, "Deployment")
    for name, pdb in budgets.items():
        assert pdb["spec"]["selector"]["matchLabels"] == deployments[name]["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["minAvailable"] == 1 and deployments[name]["spec"]["replicas"] == 2
    # The workflow file the orchestrator is pointed at parses with its own loader.
    (config_map,) = (c for n, c in of_kind(docs, "ConfigMap").items() if n.startswith("alphasaga-workflows"))
    assert config_map["data"]["workflows.yaml"] == BUILT_IN.read_text(), "run `make manifests`"
    path = tmp_path / "workflows.yaml"
    path.write_text(config_map["data"]["workflows.yaml"])
    assert load_workflows(path).get("research", 1).name == "research"


# --- least privilege (issue #30) -------------------------------------------------------

LOGINS = {Service.ORCHESTRATOR.value, *(s.value for s in KINDS.services()), "api"}


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def secret_refs(workload: dict[str, Any]) -> set[str]:
    spec = workload["spec"]["template"]["spec"]
    names = {s["secretRef"]["name"] for c in spec["containers"] for s in c.get("envFrom", []) if "secretRef" in s}
    return names | {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}


def login_of(workload: dict[str, Any]) -> str:
    """The service a workload runs as: a worker Deployment per stream runs as its service,
    a part of the orchestrator as the orchestrator."""
    name = workload["metadata"]["name"]
    if name in PARTS:
        return Service.ORCHESTRATOR.value
    return WORKER_GROUPS[name][0].value if name in WORKER_GROUPS else name


def test_prod_holds_no_secret_and_each_service_takes_its_own_login_by_reference() -> None:
    prod, dev = render("prod"), render("dev")
    assert not of_kind(prod, "Secret"), "prod's Secrets come from the secret store"
    for workload in workloads(prod):
        logins = {r for r in secret_refs(workload) if r.startswith("alphasaga-login-")}
        if workload["kind"] == "Job":  # the owner step logs in as the tables' owner
            assert logins == set() and "alphasaga-owner" in secret_refs(workload)
            continue
        assert logins == {f"alphasaga-login-{login_of(workload)}"}, workload["metadata"]["name"]
        assert "alphasaga-owner" not in secret_refs(workload)
    assert {login_of(w) for w in workloads(prod) if w["kind"] == "Deployment"} == LOGINS
    # dev brings every Secret the workloads reference, with URLs naming the login's user
    secrets = of_kind(dev, "Secret")
    for workload in workloads(dev):
        assert secret_refs(workload) <= set(secrets), workload["metadata"]["name"]
    for login in LOGINS:
        urls = secrets[f"alphasaga-login-{login}"]["stringData"]
        assert f"//alphasaga-{login}:" in urls["ALPHASAGA_REDIS_URL"]
        assert f"//alphasaga_{login}:" in urls["ALPHASAGA_DATABASE_URL"]


def meets_restricted(workload: dict[str, Any]) -> list[str]:
    """What in a pod template breaks Pod Security `restricted` (the rules a manifest can break)."""
    spec = workload["spec"]["template"]["spec"]
    pod = spec.get("securityContext", {})
    wrong = []
    for c in spec["containers"]:
        ctx = {**pod, **c.get("securityContext", {})}
        if not ctx.get("runAsNonRoot"):
            wrong.append(f"{c['name']}: runAsNonRoot")
        if ctx.get("allowPrivilegeEscalation") is not False:
            wrong.append(f"{c['name']}: allowPrivilegeEscalation")
        if ctx.get("capabilities", {}).get("drop") != ["ALL"] or ctx.get("capabilities", {}).get("add"):
            wrong.append(f"{c['name']}: capabilities")
        if ctx.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
            wrong.append(f"{c['name']}: seccomp")
        if ctx.get("appArmorProfile", {}).get("type") == "Unconfined" or ctx.get("procMount") == "Unmasked":
            wrong.append(f"{c['name']}: apparmor/procMount")
        if ctx.get("privileged"):
            wrong.append(f"{c['name']}: privileged")
    if any(v.get("hostPath") for v in spec.get("volumes", [])) or spec.get("hostNetwork"):
        wrong.append("host access")
    return wrong


def test_prod_namespaces_enforce_pod_security_and_every_pod_meets_its_namespaces_level() -> None:
    docs = render("prod")
    namespaces = of_kind(docs, "Namespace")
    labels = namespaces["alphasaga"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    sandbox = namespaces["alphasaga-sandbox"]["metadata"]["labels"]
    assert sandbox["pod-security.kubernetes.io/warn"] == "restricted"
    by_namespace: dict[str, set[str]] = {}
    for workload in workloads(docs):
        by_namespace.setdefault(workload["metadata"]["namespace"], set()).add(workload["metadata"]["name"])
        if workload["metadata"]["namespace"] == "alphasaga":
            assert not meets_restricted(workload), (workload["metadata"]["name"], meets_restricted(workload))
    # codegen alone runs where `restricted` is not enforced, and it is why
    assert by_namespace["alphasaga-sandbox"] == {Service.CODEGEN.value}
    assert meets_restricted(of_kind(docs, "Deployment")[Service.CODEGEN.value])
    # what codegen takes whole is in its namespace too
    here = {(d["kind"], d["metadata"]["name"]) for d in docs if d["metadata"].get("namespace") == "alphasaga-sandbox"}
    assert {
        ("ConfigMap", "alphasaga-settings"),
        ("ScaledObject", "codegen"),
        ("TriggerAuthentication", "alphasaga-redis"),
    } <= here


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peers(rule: dict[str, Any], direction: str) -> set[tuple[str, str, int]]:
    """(peer, protocol, port) for each peer and port of a rule; a missing list is anything."""
    names = set()
    for peer in rule.get("from" if direction == "ingress" else "to", [{}]):
        labels = peer.get("podSelector", {}).get("matchLabels", {})
        names.add(labels.get("app.kubernetes.io/name") or labels.get("k8s-app") or ("anywhere" if not peer else "?"))
    ports = [(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])]
    return {(n, proto, port) for n in names for proto, port in ports}


def allowed(docs: list[dict[str, Any]], workload: dict[str, Any], direction: str) -> set[tuple[str, str, int]]:
    ns, labels = workload["metadata"]["namespace"], workload["spec"]["template"]["metadata"]["labels"]
    flows: set[tuple[str, str, int]] = set()
    for policy in of_kind_all(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if policy["metadata"]["namespace"] != ns or not selects(spec["podSelector"], labels):
            continue
        assert direction.capitalize() in spec["policyTypes"] or direction not in spec
        for rule in spec.get(direction, []):
            flows |= peers(rule, direction)
    return flows


def of_kind_all(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_prod_network_policy_denies_all_but_the_named_flows() -> None:
    docs = render("prod")
    policies = of_kind_all(docs, "NetworkPolicy")
    ours = {w["metadata"]["name"] for w in workloads(docs)}
    for ns in {w["metadata"]["namespace"] for w in workloads(docs)}:
        deny = [p for p in policies if p["metadata"]["namespace"] == ns and p["metadata"]["name"] == "default-deny"]
        assert deny and deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, ns
    servers = {("kube-dns", "UDP", 53), ("kube-dns", "TCP", 53), ("redis", "TCP", 6379), ("postgresql", "TCP", 5432)}
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        assert allowed(docs, workload, "egress") == servers, name
        inbound = {("prometheus", "TCP", 8000)} | ({("anywhere", "TCP", 8000)} if name == "api" else set())
        assert allowed(docs, workload, "ingress") == inbound, name
        # nothing between the services: no rule names one of our pods as a peer
        assert not {peer for peer, _, _ in allowed(docs, workload, "egress") | inbound} & ours, name
