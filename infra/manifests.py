"""The deployment files that list the services, written from the one list of services and
step kinds (``alphasaga_contracts.steps``: ``Service`` and ``KINDS``). ``make manifests``
(``python infra/manifests.py``) writes them and tests/test_manifests.py fails when one
has drifted, so edit here, not there:

- ``infra/k8s/base/workers.yaml``: a Deployment per worker command stream (a service's,
  and one more for each kind with a stream of its own, which then scales apart);
- ``infra/k8s/base/keda.yaml``: a ScaledObject for each of them;
- ``infra/k8s/base/workflows.yaml``: the built-in workflows, copied for the ConfigMap;
- ``infra/k8s/overlays/prod/images/kustomization.yaml``: the production image names;
- ``infra/prometheus/prometheus.yml``: a scrape target per service;
- ``docker-compose.yml``: the services' part, between its two marker lines.

``python infra/manifests.py services`` prints the services (the Makefile's ``SERVICES``).
What differs between workers (resources, scaling) is ``DEPLOY`` below; a new service gets
the defaults. The HTTP API is a front end, not a service: its files are written by hand.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alphasaga_contracts import DEFAULT_NAMESPACE, Streams
from alphasaga_contracts.steps import KINDS, Service, StepKind
from alphasaga_saga.workflow import BUILT_IN

ROOT = Path(__file__).resolve().parents[1]
GENERATED = "Written by `make manifests` (infra/manifests.py) from alphasaga_contracts.steps: edit there."
# Production images: your registry and the release to run (overlays/prod).
PROD_REGISTRY = "registry.example.com/alphasaga"
PROD_TAG = "0.1.0"
COMPOSE_BEGIN = "  # --- the services: written by `make manifests` (infra/manifests.py); edit there ---\n"
COMPOSE_END = "  # --- end of the services ---\n"


@dataclass(frozen=True)
class Scaling:
    """KEDA's bounds for a worker, from its stream's lag. ``min_replicas=0`` scales it to
    zero between sagas; then any lag wakes it."""

    min_replicas: int = 0
    max_replicas: int = 4
    polling_s: int = 10
    cooldown_s: int = 600
    lag: int = 2


@dataclass(frozen=True)
class Deploy:
    cpu: tuple[str, str] = ("250m", "1")  # request, limit
    memory: tuple[str, str] = ("512Mi", "1Gi")
    tmp: str = "256Mi"
    scaling: Scaling = field(default_factory=Scaling)


# The first steps keep a replica (a cold start would delay every saga); ml's LightGBM is
# the largest image and the most memory; codegen's sandbox needs room in /tmp.
DEPLOY = {
    Service.REASONING: Deploy(memory=("384Mi", "1Gi"), scaling=Scaling(min_replicas=1, polling_s=15, cooldown_s=300)),
    Service.CODEGEN: Deploy(
        # Room for two sandboxed runs at once (ALPHASAGA_SANDBOX_POOL: a normal and an express job).
        memory=("768Mi", "2560Mi"),
        tmp="1Gi",
        scaling=Scaling(min_replicas=1, polling_s=15, cooldown_s=300),
    ),
    Service.ML: Deploy(cpu=("500m", "2"), memory=("768Mi", "2Gi"), scaling=Scaling(max_replicas=3, lag=1)),
}


@dataclass(frozen=True)
class WorkerGroup:
    """The processes that read one command stream: a service's, or a kind's own."""

    service: Service
    queue: str
    kinds: tuple[StepKind[Any, Any], ...]
    alone: bool  # the service has other streams: these processes serve only these kinds

    @property
    def name(self) -> str:
        return self.queue.replace(".", "-").replace("_", "-")


def worker_groups() -> list[WorkerGroup]:
    groups = []
    for service in KINDS.services():
        queues = KINDS.queues(service)
        for queue in queues:
            kinds = tuple(k for k in KINDS.hosted_by(service) if k.queue == queue)
            groups.append(WorkerGroup(service, queue, kinds, alone=len(queues) > 1))
    return groups


def deployment(group: WorkerGroup) -> str:
    d = DEPLOY.get(group.service, Deploy())
    env = ""
    if group.alone:
        kinds = ",".join(k.name for k in group.kinds)
        env = f"""          env:
            - {{name: ALPHASAGA_WORKER_KINDS, value: "{kinds}"}}
"""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {group.name}
  labels: {{app.kubernetes.io/name: {group.name}, app.kubernetes.io/component: worker}}
spec:
  revisionHistoryLimit: 5
  selector:
    matchLabels: {{app.kubernetes.io/name: {group.name}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: {group.name}}}
      annotations: {{prometheus.io/scrape: "true", prometheus.io/port: "8000", prometheus.io/path: /metrics}}
    spec:
      # Longer than the service's own stop: each of its parts has a 5 s deadline
      # (background tasks, the bus's tasks, the broker, the database pool: 20 s at worst).
      terminationGracePeriodSeconds: 45
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: {group.name}
          image: localhost/alphasaga/{group.service}:latest
          imagePullPolicy: IfNotPresent
          ports: [{{name: http, containerPort: 8000}}]
          envFrom:
            - configMapRef: {{name: alphasaga-settings}}
            - secretRef: {{name: alphasaga-urls}}
{env}{_probes_limits_and_volumes(d)}"""


def _probes_limits_and_volumes(d: Deploy) -> str:
    """The part of a worker's pod that is the same for every worker but its sizes."""
    return f"""          startupProbe:
            httpGet: {{path: /health/startup, port: http}}
            periodSeconds: 5
            failureThreshold: 36
          livenessProbe:
            httpGet: {{path: /health/live, port: http}}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet: {{path: /health/ready, port: http}}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          resources:
            requests: {{cpu: {d.cpu[0]}, memory: {d.memory[0]}}}
            limits: {{cpu: "{d.cpu[1]}", memory: {d.memory[1]}}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
          volumeMounts:
            - {{name: tmp, mountPath: /tmp}}
      volumes:
        - name: tmp
          emptyDir: {{sizeLimit: {d.tmp}}}
"""


def workers_yaml() -> str:
    head = f"""# {GENERATED}
# The workers: a Deployment per command stream. No replica count: KEDA owns it
# (keda.yaml), from the stream's lag. codegen-sandbox.yaml adds what codegen's sandbox needs.
"""
    return head + "---\n".join(deployment(g) for g in worker_groups())


def scaled_object(group: WorkerGroup, streams: Streams) -> str:
    s = DEPLOY.get(group.service, Deploy()).scaling
    wake = ', activationLagCount: "0"' if s.min_replicas == 0 else ""
    # Both lanes of the stream (the express one first): either one's lag scales the workers.
    triggers = "".join(
        f"""    - type: redis-streams
      authenticationRef: {{name: alphasaga-redis}}
      metadata: {{stream: "{stream}", consumerGroup: {group.service}, lagCount: "{s.lag}"{wake}}}
    - type: redis-streams
      authenticationRef: {{name: alphasaga-redis}}
      metadata: {{stream: "{stream}", consumerGroup: {group.service}, pendingEntriesCount: "1"}}
"""
        for stream in streams.lanes(streams.commands(group.queue))
    )
    return f"""apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {group.name}
spec:
  scaleTargetRef: {{name: {group.name}}}
  minReplicaCount: {s.min_replicas}
  maxReplicaCount: {s.max_replicas}
  pollingInterval: {s.polling_s}
  cooldownPeriod: {s.cooldown_s}
  triggers:
{triggers}"""


def keda_yaml() -> str:
    streams = Streams(DEFAULT_NAMESPACE)  # as ALPHASAGA_NAMESPACE in settings.yaml
    head = f"""# {GENERATED}
# Autoscaling of the workers with KEDA, pinned to KEDA 2.16: the redis-streams scaler's
# fields (lagCount, activationLagCount, pendingEntriesCount) and its TriggerAuthentication
# parameters have changed between releases, so check them before moving to another.
#
# Each worker reads one command at a time from its command stream, <namespace>:cmd:<service>
# (or :cmd:<service>.<kind> for a kind with a stream of its own), in the group named after
# its service (alphasaga_contracts.steps.StepKind). Two triggers per worker:
# - lagCount: entries not yet delivered to the group (XINFO GROUPS lag, Redis 7+): the
#   backlog a new replica can take at once. It is the one metric that can wake a
#   deployment scaled to zero (minReplicaCount 0, activationLagCount 0: any lag).
# - pendingEntriesCount: entries delivered but not acknowledged. It keeps a replica while
#   a command is in work, and brings one back for a command whose consumer died, since
#   only a running worker's reclaimer can take it over; lag alone would leave it stuck.
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: alphasaga-redis
spec:
  secretTargetRef:
    - {{parameter: address, name: alphasaga-keda-redis, key: address}}
"""
    return "---\n".join([head, *(scaled_object(g, streams) for g in worker_groups())])


def prod_images() -> str:
    images = "".join(
        f"  - {{name: localhost/alphasaga/{name}, newName: {PROD_REGISTRY}/{name}, newTag: {PROD_TAG}}}\n"
        for name in [*(s.value for s in Service), "api"]
    )
    return f"""# {GENERATED}
# The production images: PROD_REGISTRY and PROD_TAG there.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
images:
{images}"""


def prometheus_yml() -> str:
    targets = "".join(
        f'      - {{targets: ["{s}:8000"], labels: {{service: {s}}}}}\n' for s in (s.value for s in Service)
    )
    return f"""# {GENERATED}
global:
  scrape_interval: 15s
rule_files: ["alerts.yml"]
scrape_configs:
  # One target group per service, so that rules and dashboards can say which (`service`).
  - job_name: alphasaga
    static_configs:
{targets}"""


def compose_services() -> str:
    base = '"${BASE_IMAGE:-docker.io/library/python:3.11-slim}"'
    blocks = []
    for service in Service:
        blocks.append(
            f"""  {service}:
    <<: *service
    image: ${{{service.upper()}_IMAGE:-localhost/alphasaga/{service}:latest}}
    build: {{context: ., dockerfile: infra/docker/service.Dockerfile, args: {{SERVICE: {service}, BASE_IMAGE: {base}}}}}
"""
            + COMPOSE_EXTRA.get(service, "")
        )
    return "".join(blocks)


COMPOSE_EXTRA = {
    Service.CODEGEN: """    # bubblewrap needs user namespaces, which the default seccomp profile refuses, and a
    # fresh /proc, which the kernel refuses over the runtime's masked /proc paths; in
    # production codegen refuses to start without it (one line, exit 2), rather than run
    # generated code less confined. The sandbox filters that code's system calls itself.
    security_opt: ["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"]
""",
}


def compose(current: str) -> str:
    """``docker-compose.yml`` with the services' part between the markers written anew."""
    begin, end = current.index(COMPOSE_BEGIN) + len(COMPOSE_BEGIN), current.index(COMPOSE_END)
    return current[:begin] + compose_services() + current[end:]


def generate() -> dict[Path, str]:
    """Each generated file's path and the text it must hold."""
    compose_file = ROOT / "docker-compose.yml"
    return {
        ROOT / "infra/k8s/base/workers.yaml": workers_yaml(),
        ROOT / "infra/k8s/base/keda.yaml": keda_yaml(),
        ROOT / "infra/k8s/base/workflows.yaml": BUILT_IN.read_text(),
        ROOT / "infra/k8s/overlays/prod/images/kustomization.yaml": prod_images(),
        ROOT / "infra/prometheus/prometheus.yml": prometheus_yml(),
        compose_file: compose(compose_file.read_text()),
    }


def main(argv: list[str]) -> int:
    if argv == ["services"]:
        print(" ".join(s.value for s in Service))
        return 0
    if argv:
        print("usage: python infra/manifests.py [services]", file=sys.stderr)
        return 2
    for path, text in generate().items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
