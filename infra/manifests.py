"""The deployment files that list the services, written from the one list of services and
step kinds (``alphasaga_contracts.steps``: ``Service`` and ``KINDS``). ``make manifests``
(``python infra/manifests.py``) writes them and tests/test_manifests.py fails when one
has drifted, so edit here, not there:

- ``infra/k8s/base/workers.yaml``: a Deployment per worker command stream (a service's,
  and one more for each kind with a stream of its own, which then scales apart);
- ``infra/k8s/base/keda.yaml``: a ScaledObject for each of them;
- ``infra/k8s/base/orchestrator-parts.yaml``: the relay and the projector, Deployments of
  their own from the orchestrator's image (``PARTS``; docs/decisions/0029);
- ``infra/k8s/base/workflows.yaml``: the built-in workflows, copied for the ConfigMap;
- ``infra/k8s/overlays/prod/images/kustomization.yaml``: the production image names;
- ``infra/prometheus/prometheus.yml``: a scrape target per service;
- ``docker-compose.yml``: the services' part, between its two marker lines;
- ``docker-compose.nats.yml`` and ``docker-compose.nats-cluster.yml``: the bus on NATS
  JetStream, one node or three (docs/decisions/0021), over ``docker-compose.yml``;
- ``infra/k8s/overlays/nats/``: the same on Kubernetes: a three-node JetStream cluster
  and KEDA's ``nats-jetstream`` scaler on each worker's durable consumer.
- the orchestrator's memory limit in ``infra/k8s/base/orchestrator.yaml`` and compose, derived
  from its caches' settings (``orchestrator_memory_mi``; docs/deployment.md, "Sizing memory").

``python infra/manifests.py services`` prints the services (the Makefile's ``SERVICES``).
What differs between workers (resources, scaling) is ``DEPLOY`` below; a new service gets
the defaults. The HTTP API is a front end, not a service: its files are written by hand.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alphasaga_contracts import DEFAULT_NAMESPACE, Streams
from alphasaga_contracts.steps import KINDS, Service, StepKind
from alphasaga_orchestrator.settings import OrchestratorSettings
from alphasaga_saga.workflow import BUILT_IN
from alphasaga_shared.bus import subjects
from alphasaga_shared.config import Settings

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


# The orchestrator's memory: what it holds with empty caches, what each cached saga costs,
# and headroom, all measured (docs/decisions/0017; docs/deployment.md, "Sizing memory").
# Its two caches hold sagas in flight only, never history: the saga cache
# (ALPHASAGA_SAGA_CACHE_SIZE) and the projector's (ALPHASAGA_PROJECTION_CACHE_SIZE).
ORCHESTRATOR_BASE_MB = 100  # RSS after start-up, relay and projector running, caches empty
SAGA_ENTRY_KB = 20  # one folded research v1 saga with the simulated workers' outputs
HEADROOM = 1.5  # allocator fragmentation, batches in flight, larger outputs than the no-op ones


def orchestrator_memory_mi(
    saga_cache: int | None = None, projection_cache: int | None = None, entry_kb: float = SAGA_ENTRY_KB
) -> int:
    """The orchestrator's memory limit in MiB, for caches of these sizes (default: the
    settings' defaults), rounded up to a multiple of 64."""
    if saga_cache is None:
        saga_cache = int(OrchestratorSettings.model_fields["saga_cache_size"].default)
    if projection_cache is None:
        projection_cache = int(Settings.model_fields["projection_cache_size"].default)
    needed = (ORCHESTRATOR_BASE_MB + (saga_cache + projection_cache) * entry_kb / 1024) * HEADROOM
    return -(-int(needed) // 64) * 64


# The orchestrator's parts that the production layout runs as services of their own, from
# the orchestrator's image (``python -m alphasaga_orchestrator relay``): a third more sagas
# a second for a tenth less CPU, at 2 ms of latency (docs/decisions/0029). The orchestrator
# then runs with them off; each holds a lock, so a second replica stands by.
PARTS = ("relay", "projector")
PARTS_OFF = {"ALPHASAGA_RUN_RELAY": "false", "ALPHASAGA_RUN_PROJECTOR": "false"}


def part_memory_mi(name: str) -> int:
    """The memory limit of the orchestrator's deployment (``orchestrator``) or of one of its
    parts: each holds its own cache, the relay none."""
    if name == "orchestrator":
        return orchestrator_memory_mi(projection_cache=0)
    if name == "projector":
        return orchestrator_memory_mi(saga_cache=0)
    return orchestrator_memory_mi(saga_cache=0, projection_cache=0)


ORCHESTRATOR_LIMITS = re.compile(r'(limits: \{cpu: "[^"]+", memory: )[0-9]+Mi(\})')


def orchestrator_yaml(current: str) -> str:
    """``orchestrator.yaml`` (written by hand) with its memory limit derived."""
    written, n = ORCHESTRATOR_LIMITS.subn(rf"\g<1>{part_memory_mi('orchestrator')}Mi\g<2>", current)
    if n != 1:
        raise SystemExit("infra/k8s/base/orchestrator.yaml: expected one resources limits line to write")
    return written


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


def login_secret(login: str) -> str:
    """The Secret that holds a login's ALPHASAGA_REDIS_URL and ALPHASAGA_DATABASE_URL."""
    return f"alphasaga-login-{login}"


ARCHIVE_LOGIN = "archive"  # the retention job's PostgreSQL role (docs/decisions/0018)


def logins() -> list[str]:
    """Every login a deployment runs with: the orchestrator, each worker service, the api."""
    return [Service.ORCHESTRATOR.value, *(s.value for s in KINDS.services()), "api"]


def dev_secrets() -> str:
    """The dev overlay's Secrets: a login per service for an in-cluster Redis and PostgreSQL
    named redis and postgres, with development passwords. The base and prod hold none:
    prod's come from the secret store (docs/deployment.md)."""
    head = f"""# {GENERATED}
# Development values only: the prod overlay has no Secrets, each comes from the secret
# store under the same name (docs/deployment.md, "Kubernetes").
"""
    docs = []
    for login in logins():
        docs.append(f"""apiVersion: v1
kind: Secret
metadata:
  name: {login_secret(login)}
type: Opaque
stringData:
  ALPHASAGA_REDIS_URL: redis://alphasaga-{login}:dev-{login}@redis:6379/0
  ALPHASAGA_DATABASE_URL: postgresql://alphasaga_{login}:dev-{login}@postgres:5432/alphasaga
""")
    # The retention CronJob (base/archive.yaml) logs in to PostgreSQL alone, as the archive role.
    docs.append(f"""apiVersion: v1
kind: Secret
metadata:
  name: {login_secret(ARCHIVE_LOGIN)}
type: Opaque
stringData:
  ALPHASAGA_DATABASE_URL: postgresql://alphasaga_{ARCHIVE_LOGIN}:dev-{ARCHIVE_LOGIN}@postgres:5432/alphasaga
""")
    passwords = "".join(f"  {login}: dev-{login}\n" for login in [*logins(), ARCHIVE_LOGIN])
    docs.append(f"""# The owner step (the alphasaga-migrate Job): the tables' owner, and the password each
# role gets.
apiVersion: v1
kind: Secret
metadata:
  name: alphasaga-owner
type: Opaque
stringData:
  ALPHASAGA_DATABASE_URL: postgresql://alphasaga:alphasaga@postgres:5432/alphasaga
---
apiVersion: v1
kind: Secret
metadata:
  name: alphasaga-role-passwords
type: Opaque
stringData:
{passwords}""")
    docs.append("""# KEDA reads Redis itself and wants host:port, not a URL, and its own user
# (alphasaga acl render: alphasaga-keda may read the workers' groups and nothing else).
apiVersion: v1
kind: Secret
metadata:
  name: alphasaga-keda-redis
type: Opaque
stringData:
  address: redis:6379
  username: alphasaga-keda
  password: dev-keda
""")
    docs.append("""# The api's token signing key (production: openssl rand -base64 48, from the secret store).
apiVersion: v1
kind: Secret
metadata:
  name: alphasaga-api
type: Opaque
stringData:
  ALPHASAGA_API_SIGNING_KEY: development-only-signing-key-replace-me-in-production
""")
    return head + "---\n".join(docs)


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
{_pod_template_head(group.name)}      containers:
        - name: {group.name}
          image: localhost/alphasaga/{group.service}:latest
          imagePullPolicy: IfNotPresent
          ports: [{{name: http, containerPort: 8000}}]
          envFrom:
            - configMapRef: {{name: alphasaga-settings}}
            # Its own Redis user and PostgreSQL role (docs/security.md), by reference only.
            - secretRef: {{name: {login_secret(group.service.value)}}}
{env}{_probes_limits_and_volumes(d)}"""


def _pod_template_head(name: str) -> str:
    """A Deployment's pod template up to its containers, the same for every one of ours."""
    return f"""  template:
    metadata:
      labels: {{app.kubernetes.io/name: {name}}}
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
"""


def _probes_limits_and_volumes(d: Deploy) -> str:
    """The part of a worker's pod (or an orchestrator's part's) that is the same for every
    one but its sizes."""
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
    streams = Streams(DEFAULT_NAMESPACE)  # as ALPHASAGA_NAMESPACE in settings/settings.yaml
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
    - {{parameter: username, name: alphasaga-keda-redis, key: username}}
    - {{parameter: password, name: alphasaga-keda-redis, key: password}}
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
        f'      - {{targets: ["{s}:8000"], labels: {{service: {s}}}}}\n' for s in deployed() if s != "api"
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
    env_file: [.secrets/env/{service}.env]
"""
            + COMPOSE_EXTRA.get(service, "")
            + (f"    mem_limit: {part_memory_mi('orchestrator')}m\n" if service == Service.ORCHESTRATOR else "")
        )
        if service == Service.ORCHESTRATOR:
            blocks += [compose_part(part) for part in PARTS]
    return "".join(blocks)


def compose_part(part: str) -> str:
    """A part of the orchestrator as a service of its own: its image, its login."""
    return f"""  {part}:
    <<: *service
    image: ${{ORCHESTRATOR_IMAGE:-localhost/alphasaga/orchestrator:latest}}
    command: [{part}]
    env_file: [.secrets/env/orchestrator.env]
    mem_limit: {part_memory_mi(part)}m
"""


COMPOSE_EXTRA = {
    Service.ORCHESTRATOR: f"""    # Its relay and projector run as services of their own (below; docs/decisions/0029).
    environment:
      ALPHASAGA_ENV: production
      ALPHASAGA_WAIT_FOR_SERVERS_S: "600"
      ALPHASAGA_OTLP_ENDPOINT: ${{OTLP_ENDPOINT-http://jaeger:4318}}
{"".join(f'      {k}: "{v}"{chr(10)}' for k, v in PARTS_OFF.items())}""",
    Service.CODEGEN: """    # bubblewrap needs user namespaces, which the default seccomp profile refuses, and a
    # fresh /proc, which the kernel refuses over the runtime's masked /proc paths; in
    # production codegen refuses to start without it (one line, exit 2), rather than run
    # generated code less confined. The sandbox filters that code's system calls itself.
    security_opt: ["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"]
    # Redis and PostgreSQL alone (and Prometheus's scrape), on an internal network: no
    # egress, so no tracing either (docs/security.md).
    networks: [codegen]
    environment:
      ALPHASAGA_ENV: production
      ALPHASAGA_WAIT_FOR_SERVERS_S: "600"
      ALPHASAGA_OTLP_ENDPOINT: ""
""",
}


def deployed() -> list[str]:
    """What compose and Kubernetes run of ours: the services, the orchestrator's parts beside
    it, and the HTTP API."""
    names: list[str] = []
    for service in Service:
        names += [service.value, *(PARTS if service == Service.ORCHESTRATOR else ())]
    return [*names, "api"]


def parts_yaml() -> str:
    """``infra/k8s/base/orchestrator-parts.yaml``: the relay and the projector, each a
    Deployment from the orchestrator's image with its login; two replicas, one of which
    holds the part's lock and works while the other stands by, and a disruption budget
    that keeps one through a drain (without a relay no command is sent)."""
    docs = []
    for part in PARTS:
        sizes = Deploy(cpu=("100m", "1"), memory=("128Mi", f"{part_memory_mi(part)}Mi"), tmp="64Mi")
        docs.append(
            f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {part}
  labels: {{app.kubernetes.io/name: {part}, app.kubernetes.io/component: orchestrator}}
spec:
  replicas: 2
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxUnavailable: 0, maxSurge: 1}}
  selector:
    matchLabels: {{app.kubernetes.io/name: {part}}}
{_pod_template_head(part)}      containers:
        - name: {part}
          image: localhost/alphasaga/orchestrator:latest
          imagePullPolicy: IfNotPresent
          args: [{part}]
          ports: [{{name: http, containerPort: 8000}}]
          envFrom:
            - configMapRef: {{name: alphasaga-settings}}
            - secretRef: {{name: alphasaga-login-orchestrator}}
{_probes_limits_and_volumes(sizes)}---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {part}
spec:
  minAvailable: 1
  selector:
    matchLabels: {{app.kubernetes.io/name: {part}}}
"""
        )
    head = f"# {GENERATED}\n# The orchestrator's parts as Deployments of their own (docs/decisions/0029).\n"
    return head + "---\n".join(docs)


def compose_tls() -> str:
    """``docker-compose.tls.yml``: Redis and PostgreSQL on TLS alone, with the certificates
    of ``make certs`` (each server's copy, ``make compose-secrets TLS=1``), and every
    service (and the api) given the CA its URLs name."""
    services = "".join(f"  {s}: {{volumes: [./.secrets/tls-redis/ca.crt:/tls/ca.crt:ro]}}\n" for s in deployed())
    return f"""# {GENERATED}
# Compose's TLS variant (issue #30): make certs && make compose-secrets TLS=1, then
#   docker compose -f docker-compose.yml -f docker-compose.tls.yml up -d
# Redis listens on TLS alone; PostgreSQL takes TLS alone over the network (pg_hba.tls.conf),
# which every URL requires (verify-full); the owner step stays on the Unix socket.
services:
  redis:
    command: ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
              "--protected-mode", "no", "--dir", "/data", "--aclfile", "/run/alphasaga/users.acl",
              "--port", "0", "--tls-port", "6379", "--tls-cert-file", "/tls/server.crt",
              "--tls-key-file", "/tls/server.key", "--tls-ca-cert-file", "/tls/ca.crt", "--tls-auth-clients", "no"]
    volumes: [./.secrets/tls-redis:/tls:ro]
    healthcheck:
      test: ["CMD", "redis-cli", "--tls", "--cacert", "/tls/ca.crt", "ping"]
  postgres:
    command: ["postgres", "-c", "hba_file=/etc/alphasaga/pg_hba.conf", "-c", "ssl=on",
              "-c", "ssl_cert_file=/tls/server.crt", "-c", "ssl_key_file=/tls/server.key"]
    volumes: [./.secrets/tls-postgres:/tls:ro, ./infra/postgres/pg_hba.tls.conf:/etc/alphasaga/pg_hba.conf:ro]
{services}"""


NATS_IMAGE = "${NATS_IMAGE:-docker.io/library/nats:2.10}"
NATS_NODES = ("nats-1", "nats-2", "nats-3")


def compose_nats(nodes: tuple[str, ...]) -> str:
    """Compose's override putting the bus on JetStream: one node, or a cluster whose
    streams are replicated on three."""
    clustered = len(nodes) > 1
    blocks = []
    for i, node in enumerate(nodes):
        command = ["-js", "-sd", "/data", "-m", "8222", "-n", node]
        if clustered:
            routes = ",".join(f"nats://{n}:6222" for n in nodes if n != node)
            command += ["--cluster_name", "alphasaga", "--cluster", "nats://0.0.0.0:6222", "--routes", routes]
        blocks.append(
            f"""  {node}:
    image: {NATS_IMAGE}
    command: [{", ".join(f'"{c}"' for c in command)}]
    volumes: [{node}-data:/data]
    ports: ["127.0.0.1:${{NATS_PORT_{i + 1}:-{4222 + i}}}:4222"]
    restart: unless-stopped
"""
        )
    url = ",".join(f"nats://{n}:4222" for n in nodes)
    env = f'      ALPHASAGA_BROKER_URL: {url}\n      ALPHASAGA_NATS_REPLICAS: "{len(nodes)}"\n'
    depends = "".join(f"      {n}: {{condition: service_started}}\n" for n in nodes)
    for service in deployed():
        blocks.append(f"  {service}:\n    environment:\n{env}    depends_on:\n{depends}")
    volumes = "".join(f"  {n}-data: {{}}\n" for n in nodes)
    what = "a three-node JetStream cluster, streams at three replicas" if clustered else "one JetStream node"
    name = "docker-compose.nats-cluster.yml" if clustered else "docker-compose.nats.yml"
    return f"""# {GENERATED}
# The bus on NATS JetStream ({what}) instead of Redis, over docker-compose.yml:
#   docker compose -f docker-compose.yml -f {name} up
# The event store stays in PostgreSQL, and on JetStream the HTTP API's rate limits are
# kept there too (docs/decisions/0026).
services:
{"".join(blocks)}volumes:
{volumes}"""


def nats_kustomization() -> str:
    streams = Streams(DEFAULT_NAMESPACE)
    patches = []
    for g in worker_groups():
        s = DEPLOY.get(g.service, Deploy()).scaling
        triggers = []
        for stream in streams.lanes(streams.commands(g.queue)):  # a backlog on either lane scales it
            metadata = (
                f'natsServerMonitoringEndpoint: "nats.alphasaga-nats.svc.cluster.local:8222", account: "$G",'
                f" stream: {subjects.place(stream).stream}, consumer: {subjects.durable(g.service, stream)},"
                f' lagThreshold: "{s.lag}", activationLagThreshold: "0"'
            )
            triggers.append(f"          - type: nats-jetstream\n            metadata: {{{metadata}}}\n")
        patches.append(
            f"""  - target: {{kind: ScaledObject, name: {g.name}}}
    patch: |
      - op: replace
        path: /spec/triggers
        value:
{"".join(triggers)}"""
        )
    return f"""# {GENERATED}
# The services with the bus on NATS JetStream (docs/decisions/0021): a three-node cluster
# (nats.yaml), streams and buckets at three replicas, and KEDA's nats-jetstream scaler on
# each worker's durable consumer in place of the redis-streams one. The scaler reads the
# consumer's pending count (not yet delivered plus unacknowledged), so one metric both wakes
# a worker scaled to zero and keeps a replica while a command is in work or waits for its
# AckWait to pass; JetStream redelivers a dead consumer's command itself, no reclaimer needed.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: alphasaga-nats
resources:
  - ../../base
  - nats.yaml
patches:
  - target: {{kind: ConfigMap, name: alphasaga-settings}}
    patch: |
      - {{op: add, path: /data/ALPHASAGA_BROKER_URL, value: "nats://nats:4222"}}
      - {{op: add, path: /data/ALPHASAGA_NATS_REPLICAS, value: "3"}}
  - target: {{kind: TriggerAuthentication, name: alphasaga-redis}}
    patch: |
      $patch: delete
      apiVersion: keda.sh/v1alpha1
      kind: TriggerAuthentication
      metadata: {{name: alphasaga-redis}}
{"".join(patches)}"""


NATS_K8S = f"""# {GENERATED}
# A three-node NATS JetStream cluster: a StatefulSet behind a headless Service (client 4222,
# routes 6222, monitoring 8222, which KEDA's scaler reads).
apiVersion: v1
kind: Namespace
metadata:
  name: alphasaga-nats
---
apiVersion: v1
kind: Service
metadata:
  name: nats
spec:
  clusterIP: None
  selector: {{app: nats}}
  ports:
    - {{name: client, port: 4222}}
    - {{name: cluster, port: 6222}}
    - {{name: monitor, port: 8222}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: nats
spec:
  serviceName: nats
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels: {{app: nats}}
  template:
    metadata:
      labels: {{app: nats}}
    spec:
      containers:
        - name: nats
          image: docker.io/library/nats:2.10
          args:
            - -js
            - -sd=/data
            - -m=8222
            - -n=$(POD_NAME)
            - --cluster_name=alphasaga
            - --cluster=nats://0.0.0.0:6222
            - --routes=nats://nats-0.nats:6222,nats://nats-1.nats:6222,nats://nats-2.nats:6222
          env:
            - name: POD_NAME
              valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
          ports:
            - {{name: client, containerPort: 4222}}
            - {{name: cluster, containerPort: 6222}}
            - {{name: monitor, containerPort: 8222}}
          readinessProbe:
            httpGet: {{path: "/healthz?js-enabled-only=true", port: 8222}}
          resources:
            requests: {{cpu: 100m, memory: 256Mi}}
            limits: {{cpu: "1", memory: 1Gi}}
          volumeMounts:
            - {{name: data, mountPath: /data}}
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests: {{storage: 2Gi}}
"""


def compose(current: str) -> str:
    """``docker-compose.yml`` with the services' part between the markers written anew."""
    begin, end = current.index(COMPOSE_BEGIN) + len(COMPOSE_BEGIN), current.index(COMPOSE_END)
    return current[:begin] + compose_services() + current[end:]


def generate() -> dict[Path, str]:
    """Each generated file's path and the text it must hold."""
    compose_file = ROOT / "docker-compose.yml"
    orchestrator_file = ROOT / "infra/k8s/base/orchestrator.yaml"
    return {
        orchestrator_file: orchestrator_yaml(orchestrator_file.read_text()),
        ROOT / "infra/k8s/base/workers.yaml": workers_yaml(),
        ROOT / "infra/k8s/base/orchestrator-parts.yaml": parts_yaml(),
        ROOT / "infra/k8s/base/keda.yaml": keda_yaml(),
        ROOT / "infra/k8s/base/workflows.yaml": BUILT_IN.read_text(),
        ROOT / "infra/k8s/overlays/prod/images/kustomization.yaml": prod_images(),
        ROOT / "infra/k8s/overlays/dev/secrets.yaml": dev_secrets(),
        ROOT / "docker-compose.tls.yml": compose_tls(),
        ROOT / "infra/prometheus/prometheus.yml": prometheus_yml(),
        compose_file: compose(compose_file.read_text()),
        ROOT / "docker-compose.nats.yml": compose_nats(("nats",)),
        ROOT / "docker-compose.nats-cluster.yml": compose_nats(NATS_NODES),
        ROOT / "infra/k8s/overlays/nats/kustomization.yaml": nats_kustomization(),
        ROOT / "infra/k8s/overlays/nats/nats.yaml": NATS_K8S,
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
