"""The deployment of compose's TLS variant as real containers (`make container-test`, not
part of `make test`; issues #30 and #27).

The test reads ``docker-compose.yml`` with ``docker-compose.tls.yml`` (tests/containers/
compose.py) and starts what they describe through testcontainers: every service's image,
command, entrypoint, environment and env files, mounts, networks (``internal`` where the
file says so), published ports, read-only root, tmpfs, security options and memory limit,
in the order and on the conditions of ``depends_on``. It substitutes only what a test must:
the images' tags (through the file's own ``*_IMAGE`` variables), random host ports on the
address the file names, names and volumes of the run's own under one label, ``./.secrets``
made for the run by ``infra/tls/make-certs.sh`` and ``infra/compose_secrets.py --tls`` (what
`make certs` and `make compose-secrets TLS=1` run), no tracing (``OTLP_ENDPOINT=``, as the
file allows) and so no Jaeger, Prometheus or Grafana, and a shorter reclaim for the
services (``TEST_ENV``). A wrong variable,
network or mount in the files therefore fails here.

From the host the `alphasaga` command line (the file's ``host.env``) submits research sagas
and follows them, while the test kills the ml container with SIGKILL and stops codegen with
SIGTERM in the middle of their work; from inside codegen's container a probe checks that it
reaches Redis and PostgreSQL as its own login and nothing else. At the end everything the
run created is removed, and the test checks that no container, network or volume is left.

The images come from `make images` and `make infra-images` (IMAGE_PREFIX, IMAGE_TAG;
REDIS_IMAGE and POSTGRES_IMAGE override the last two). Where no Docker engine runs,
testcontainers talks to Podman's (tests/support/podman_socket.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import redis
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from alphasaga_contracts import Service, Streams
from tests.containers import compose
from tests.support.helpers import ROOT

# Each test waits on sagas of a shared machine: bounds here are against hangs, not speed.
pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

SERVICES = [s.value for s in Service]
# The orchestrator's relay and projector, services of their own in the file (decision 0029).
PARTS = ["relay", "projector"]
COMPOSE_FILES = [ROOT / "docker-compose.yml", ROOT / "docker-compose.tls.yml"]
PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/alphasaga")
TAG = os.environ.get("IMAGE_TAG", "latest")
# The observability half of the file: images from registries, and tracing is off here.
LEFT_OUT = {"jaeger", "prometheus", "grafana"}
LABEL = "alphasaga.container-test"
# The uid the Redis and PostgreSQL images of `make infra-images` run as (Debian's
# packages): their copy of the server's key must be theirs.
SERVER_UID = os.environ.get("SERVER_UID", "100")
# The test's only changes to the services' environment: a dead consumer's entries are taken
# over after 3 s instead of 30 s; ml blocks long in its reads (see the ml test).
TEST_ENV = {"ALPHASAGA_RECLAIM_IDLE_MS": "3000", "ALPHASAGA_RECLAIM_INTERVAL_MS": "500"}
TEST_ENV_OF = {Service.ML.value: {"ALPHASAGA_BLOCK_MS": "600000"}}
STREAMS = Streams()  # the services run with the default namespace
SAGA_TIMEOUT_S = 300


def images() -> dict[str, str]:
    """The file's image variables, pointed at the images `make container-test` built."""
    found = {f"{s.upper()}_IMAGE": f"{PREFIX}/{s}:{TAG}" for s in [*SERVICES, "api"]}
    found["REDIS_IMAGE"] = os.environ.get("REDIS_IMAGE", f"{PREFIX}/redis:{TAG}")
    found["POSTGRES_IMAGE"] = os.environ.get("POSTGRES_IMAGE", f"{PREFIX}/postgres:{TAG}")
    return found


@dataclass
class Stack:
    client: docker.DockerClient
    run_id: str
    work: Path
    project: compose.Project = field(init=False)
    variables: dict[str, str] = field(default_factory=dict)
    networks: dict[str, Network] = field(default_factory=dict)
    containers: dict[str, DockerContainer] = field(default_factory=dict)
    volumes_before: set[str] = field(default_factory=set)

    @property
    def label(self) -> dict[str, str]:
        return {LABEL: self.run_id}

    @property
    def secrets(self) -> Path:
        return self.work / ".secrets"

    def name(self, service: str) -> str:
        return f"{self.run_id}-{service}"

    def container(self, service: str) -> Any:
        """The docker SDK's container (testcontainers wraps it), its attributes fresh."""
        wrapped = self.containers[service].get_wrapped_container()
        wrapped.reload()
        return wrapped

    # --- starting what the file says -------------------------------------------------

    def host_path(self, source: str) -> str:
        """A bind mount's source: the run's secrets where the file says ./.secrets, the
        checkout for everything else the file names (pg_hba.conf, …)."""
        relative = Path(source)
        if relative.parts[0] == ".secrets":
            return str(self.secrets.joinpath(*relative.parts[1:]))
        return str(self.project.directory / relative)

    def environment(self, service: str) -> dict[str, str]:
        spec = self.project.services[service]
        env: dict[str, str] = {}
        for path in spec.get("env_file") or []:
            env.update(compose.env_file(Path(self.host_path(path))))
        env.update(spec["environment"])  # compose: environment wins over env_file
        if service in SERVICES or service == "api":
            env.update(TEST_ENV)
            env.update(TEST_ENV_OF.get(service, {}))
        return env

    def build(self, service: str, name: str | None = None, restart: bool = True, **env: str) -> DockerContainer:
        """A container of ``service`` as the file describes it (not started); a test's extra
        one (``restart=False``) without the restart policy, to see how it exits."""
        spec = self.project.services[service]
        c = DockerContainer(spec["image"]).with_name(name or self.name(service))
        for key, value in {**self.environment(service), **env}.items():
            c.with_env(key, value)
        if "command" in spec:
            c.with_command(spec["command"])
        for volume in spec.get("volumes") or []:
            source, target, *mode = volume.split(":")
            if source.startswith("."):
                c.with_volume_mapping(self.host_path(source), target, mode[0] if mode else "rw")
            else:  # a named volume of the file, the run's own
                c.with_volume_mapping(self.name(source), target, mode[0] if mode else "rw")
        for path in spec.get("tmpfs") or []:
            c.with_tmpfs_mount(path)
        for port in spec.get("ports") or []:
            address, _, target = port.rpartition(":")
            host_ip = address.rpartition(":")[0] if ":" in address else ""
            # The file's address, a port of the run's choosing.
            c.ports[f"{target}/tcp"] = (host_ip, None) if host_ip else None  # type: ignore[assignment]
        kwargs: dict[str, Any] = {"labels": self.label}
        for key in ("entrypoint", "security_opt", "mem_limit", "read_only", "network_mode"):
            if key in spec:
                kwargs[key] = spec[key]
        if "restart" in spec and restart:  # a service that fails at a loaded start comes back, as in compose
            kwargs["restart_policy"] = {"Name": spec["restart"]}
        c.with_kwargs(**kwargs)
        networks = spec.get("networks") or ([] if "network_mode" in spec else ["default"])
        if networks:
            c.with_network(self.networks[networks[0]]).with_network_aliases(service)
        return c

    def start(self, service: str) -> None:
        """Start ``service`` once its dependencies meet their conditions, and join it to the
        rest of its networks."""
        for dep, condition in self.project.depends_on(service).items():
            if dep in LEFT_OUT:
                continue
            if condition == "service_healthy":
                self.wait_healthy(dep)
            elif condition == "service_completed_successfully":
                code = self.wait_exit(dep, timeout=180)
                assert code == 0, (dep, self.logs(dep)[-3000:])
        c = self.build(service)
        self.containers[service] = c
        c.start()
        for network in (self.project.services[service].get("networks") or [])[1:]:
            self.networks[network].connect(c.get_container_id(), [service])

    # --- the engine ------------------------------------------------------------------

    def healthcheck(self, service: str) -> list[str]:
        """The file's health check, or the image's (the services' Dockerfile's)."""
        spec = self.project.services.get(service, {}).get("healthcheck")
        test = spec["test"] if spec else self.container(service).attrs["Config"]["Healthcheck"]["Test"]
        if isinstance(test, str):
            return ["/bin/sh", "-c", test]
        return list(test[1:]) if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]

    def healthy(self, service: str) -> bool:
        """Runs the health check now: Podman without systemd never schedules it, and the
        test should not wait for Docker's interval either."""
        try:
            code, _ = self.container(service).exec_run(self.healthcheck(service))
        except docker.errors.APIError:  # not running (yet, or any more)
            return False
        return bool(code == 0)

    def wait_healthy(self, service: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        # One that exited is started again by its restart policy (the file's), if it has one.
        comes_back = self.project.services.get(service, {}).get("restart", "no") in ("always", "unless-stopped")
        while not self.healthy(service):
            state = self.container(service).attrs["State"]
            running = state.get("Running", False) or state.get("Status") in ("created", "restarting")
            if not running and not comes_back:
                raise AssertionError(f"{service} exited ({state.get('ExitCode')}):\n{self.logs(service)[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} not healthy within {timeout}s:\n{self.logs(service)[-3000:]}")
            time.sleep(1)

    def wait_exit(self, service: str, timeout: float = 60) -> int:
        return int(self.container(service).wait(timeout=timeout)["StatusCode"])

    def logs(self, service: str) -> str:
        return str(self.container(service).logs().decode(errors="replace"))

    def address(self, service: str, network: str) -> str:
        """The container's address on one of the file's networks (the host reaches it)."""
        return str(
            self.container(service).attrs["NetworkSettings"]["Networks"][self.networks[network].name]["IPAddress"]
        )

    def http_address(self, service: str) -> tuple[str, int]:
        """Where the host reaches a service's health port: its address on its network."""
        network = self.project.services[service]["networks"][0]
        return self.address(service, network), 8000

    def published(self, service: str, port: int) -> tuple[str, int]:
        binding = self.container(service).attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]
        return binding["HostIp"], int(binding["HostPort"])

    def stop_grace(self, service: str) -> int:
        return compose.seconds(self.project.services[service].get("stop_grace_period", "10s"))

    def labelled(self) -> dict[str, list[str]]:
        """What still carries the run's label: containers, networks and volumes."""
        flt = {"label": f"{LABEL}={self.run_id}"}
        return {
            "containers": [c.id for c in self.client.containers.list(all=True, filters=flt)],
            "networks": [n.id for n in self.client.networks.list(filters=flt)],
            "volumes": [v.id for v in self.client.volumes.list(filters=flt)],
        }

    def down(self) -> None:
        """Remove the run's containers (with their anonymous volumes), networks and volumes,
        by label: also what a failed start left without a handle."""
        flt = {"label": f"{LABEL}={self.run_id}"}
        for c in self.client.containers.list(all=True, filters=flt):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True, v=True)
        self.containers.clear()
        for n in self.client.networks.list(filters=flt):
            n.remove()
        for v in self.client.volumes.list(filters=flt):
            v.remove(force=True)

    # --- the host's side ----------------------------------------------------------------

    def host_env(self) -> dict[str, str]:
        """The file's host.env (the front ends' login from the host), on the run's ports."""
        ports = {"REDIS_PORT": str(self.published("redis", 6379)[1])}
        ports["POSTGRES_PORT"] = str(self.published("postgres", 5432)[1])
        found = {}
        for line in (self.secrets / "host.env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            found[key] = compose.interpolate(value.strip('"'), ports)
        return found

    @property
    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
        return {**env, **self.host_env()}

    def cli(self, *args: str, timeout: float = SAGA_TIMEOUT_S + 60) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("alphasaga")
        cmd = [exe] if exe else [sys.executable, "-m", "alphasaga_cli"]
        return subprocess.run(
            [*cmd, *args], env=self.cli_env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def redis(self) -> redis.Redis:
        """The test's own look into Redis, as admin."""
        host, port = self.published("redis", 6379)
        return redis.Redis(
            host=host,
            port=port,
            ssl=True,
            ssl_ca_certs=str(self.work / "tls" / "ca.crt"),
            username="alphasaga-admin",
            password=(self.secrets / "passwords" / "redis" / "admin").read_text().strip(),
            decode_responses=True,
        )


def prepare(s: Stack) -> None:
    """The run's certificates and ``./.secrets`` (what `make certs` and `make compose-secrets
    TLS=1` run), and the file read with the run's variables."""
    subprocess.run(
        [str(ROOT / "infra" / "tls" / "make-certs.sh"), str(s.work / "tls")], check=True, capture_output=True
    )
    env = {**os.environ, "REDIS_UID": SERVER_UID, "POSTGRES_UID": SERVER_UID}
    secrets = [sys.executable, str(ROOT / "infra" / "compose_secrets.py"), "--tls", "--certs", str(s.work / "tls")]
    subprocess.run([*secrets, "--out", str(s.secrets)], check=True, capture_output=True, env=env)
    s.variables = {
        **images(),
        "POSTGRES_PASSWORD": uuid.uuid4().hex,
        "API_SIGNING_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "OTLP_ENDPOINT": "",
    }
    s.project = compose.load(COMPOSE_FILES, s.variables)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, docker_host: str) -> Iterator[Stack]:
    # docker_host: the session's engine API (tests/support/podman_socket.py); none is a failure.
    client = docker.from_env()
    s = Stack(client=client, run_id=f"asct{uuid.uuid4().hex[:8]}", work=tmp_path_factory.mktemp("containers"))
    s.volumes_before = {v.name for v in client.volumes.list()}
    try:
        prepare(s)
        run = [name for name in s.project.services if name not in LEFT_OUT]
        needed = {s.project.services[name]["image"] for name in run}
        missing = [i for i in sorted(needed) if not client.images.list(name=i)]
        if missing:
            pytest.fail(f"images not built: {', '.join(missing)} (`make container-test` builds them)")
        for key, spec in s.project.networks.items():
            network = Network(docker_network_kw={"internal": bool(spec.get("internal")), "labels": s.label})
            network.name = s.name(key)
            s.networks[key] = network.create()
        for volume in s.project.volumes:  # those of the services run, the run's own
            if any(v.startswith(f"{volume}:") for name in run for v in s.project.services[name].get("volumes", [])):
                client.volumes.create(s.name(volume), labels=s.label)
        for service in s.project.order(run):
            s.start(service)
        for service in [*SERVICES, *PARTS, "api"]:
            s.wait_healthy(service)
        yield s
    finally:
        s.down()
        client.close()


def submit(stack: Stack, start: str = "2008-01-01") -> str:
    """A research saga on sp500 from ``start``: a start no other test used gives codegen
    bars it has not checked before, so its look-ahead check runs in full rather than being
    reused (``ALPHASAGA_SANDBOX_PROVEN_CHECKS``) and the command stays pending a while."""
    result = stack.cli("submit", "--dataset", "sp500", "--start", start, "--json")
    assert result.returncode == 0, result.stderr
    saga_id: str = json.loads(result.stdout)["saga_id"]
    return saga_id


def wait_completed(stack: Stack, saga_id: str) -> dict[str, object]:
    result = stack.cli("watch", saga_id, "--timeout", str(SAGA_TIMEOUT_S))
    status = stack.cli("status", saga_id, "--json")
    assert status.returncode == 0, status.stderr
    summary: dict[str, object] = json.loads(status.stdout)
    assert result.returncode == 0 and summary["state"] == "COMPLETED", (summary, result.stdout, result.stderr)
    return summary


def pending(stack: Stack, service: str) -> int:
    with stack.redis() as r:
        try:
            return int(r.xpending(STREAMS.commands(service), service)["pending"])
        except redis.ResponseError:  # the group does not exist yet
            return 0


def wait_pending(stack: Stack, service: str, timeout: float = SAGA_TIMEOUT_S) -> None:
    """Until the service's consumer holds a command (it has read it and is working)."""
    deadline = time.monotonic() + timeout
    while pending(stack, service) == 0:
        if time.monotonic() > deadline:
            with stack.redis() as r:
                stream = STREAMS.commands(service)
                groups, consumers = r.xinfo_groups(stream), r.xinfo_consumers(stream, service)
            raise AssertionError(f"{service} never took a command within {timeout}s: {groups} {consumers}")
        time.sleep(0.005)


def wait_blocked_read(stack: Stack, service: str, timeout: float = 60) -> None:
    """Until the service's container has an XREADGROUP blocked in Redis (CLIENT LIST)."""
    address = stack.http_address(service)[0] + ":"
    deadline = time.monotonic() + timeout
    while True:
        with stack.redis() as r:
            clients = [c for c in r.client_list() if c["addr"].startswith(address)]
        if any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{service} has no blocked read within {timeout}s: {clients}")
        time.sleep(0.1)


def replies(stack: Stack, service: str, saga_id: str) -> list[dict[str, str]]:
    """The service's replies on its event stream for one saga."""
    with stack.redis() as r:
        entries = r.xrange(STREAMS.events(service))
    return [fields for _, fields in entries if fields.get("correlation_id") == saga_id]


def probe(address: tuple[str, int], path: str) -> tuple[int, str]:
    """One GET; (0, error) when nothing answers."""
    try:
        with socket.create_connection(address, timeout=2) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError as exc:
        return 0, type(exc).__name__
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, "empty answer"
    return int(head.split()[1]), body.decode(errors="replace")


class ReadinessWatch(threading.Thread):
    """Probes /health/ready as fast as it answers and keeps every distinct answer."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.answers: list[tuple[float, int, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            status, body = probe(self.address, "/health/ready")
            if not self.answers or self.answers[-1][1:] != (status, body):
                self.answers.append((time.monotonic(), status, body))
            time.sleep(0.002)


def test_a_service_without_a_redis_url_exits_at_once_with_one_line_and_code_2(stack: Stack) -> None:
    c = stack.build(Service.REASONING, name=stack.name("no-redis-url"), restart=False)
    c.env.pop("ALPHASAGA_REDIS_URL")
    stack.containers["no-redis-url"] = c.start()
    assert stack.wait_exit("no-redis-url") == 2
    lines = stack.logs("no-redis-url").strip().splitlines()
    assert lines == [
        "alphasaga-reasoning: ALPHASAGA_REDIS_URL (or ALPHASAGA_BROKER_URL) not set"
        " (required when ALPHASAGA_ENV=production)"
    ]


def test_every_service_is_ready_and_the_host_reaches_only_what_the_file_publishes_on_loopback(stack: Stack) -> None:
    for service in [*SERVICES, *PARTS, "api"]:
        status, body = probe(stack.http_address(service), "/health/ready")
        assert status == 200, (service, body)
        checks = json.loads(body)["checks"]
        assert {"redis", "postgres"} <= set(checks), (service, checks)
        assert all(c == "ok" or c["status"] == "ok" for c in checks.values()), (service, checks)
        env = stack.container(service).attrs["Config"]["Env"]
        assert "ALPHASAGA_OTLP_ENDPOINT=" in env, (service, env)  # tracing off, as asked
        assert not [e for e in env if e.startswith("ALPHASAGA_LLM_URL=")]
    for service in stack.containers:
        ports = stack.container(service).attrs["NetworkSettings"]["Ports"] or {}
        bound = {b["HostIp"] for bindings in ports.values() if bindings for b in bindings}
        assert bound <= {"127.0.0.1"}, (service, ports)
    published = {s for s in stack.containers if stack.container(s).attrs["NetworkSettings"]["Ports"]}
    published = {s for s in published if any(stack.container(s).attrs["NetworkSettings"]["Ports"].values())}
    assert published == {"redis", "postgres", "api"}


# Run inside codegen's container (its Python, its environment): what it can reach, and
# what its login and PostgreSQL's owner can do from there.
REACH = """
import json, socket, sys
found = {}
for name, host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        found[name] = "open"
    except OSError as exc:
        found[name] = type(exc).__name__
routes = [line.split() for line in open("/proc/net/route").read().splitlines()[1:]]
found["default route"] = "yes" if any(r[1] == "00000000" for r in routes) else "no"
print(json.dumps(found))
"""
FORGE = """
import asyncio, json, os, sys
import asyncpg, redis

async def forge():
    found = {}
    r = redis.Redis.from_url(os.environ["ALPHASAGA_REDIS_URL"])
    try:
        r.xadd("alphasaga:evt:sagas", {"type": "sagas.SagaCompleted"})
        found["redis"] = "added"
    except redis.ResponseError as exc:
        found["redis"] = type(exc).__name__
    own = await asyncpg.connect(os.environ["ALPHASAGA_DATABASE_URL"])
    try:
        await own.execute("INSERT INTO alphasaga.events (stream_id, version, event_id, type, data)"
                          " VALUES ('saga-x', 1, gen_random_uuid(), 'sagas.SagaCompleted', '{}')")
        found["events"] = "inserted"
    except asyncpg.InsufficientPrivilegeError as exc:
        found["events"] = "permission denied" if "permission denied" in str(exc) else str(exc)
    finally:
        await own.close()
    try:
        await asyncpg.connect(sys.argv[1], timeout=10)
        found["owner"] = "logged in"
    except Exception as exc:
        found["owner"] = str(exc)
    print(json.dumps(found))

asyncio.run(forge())
"""
PORTS = (6379, 5432, 8000)  # Redis's, PostgreSQL's, and every service's HTTP (health, metrics, api)


def reach_targets(stack: Stack) -> tuple[list[tuple[str, str, int]], set[str]]:
    """Every port of every other container of the run, on each of its networks' addresses,
    and the host's (its servers on loopback, the run's published ports) at codegen's gateway;
    with the names of the ones the policy allows (Redis and PostgreSQL by their names)."""
    allowed = {"redis by name", "postgres by name"}
    targets = [("redis by name", "redis", 6379), ("postgres by name", "postgres", 5432)]
    for service in stack.containers:
        if service == Service.CODEGEN or not stack.container(service).attrs["State"]["Running"]:
            continue
        for network, data in stack.container(service).attrs["NetworkSettings"]["Networks"].items():
            for port in PORTS:
                name = f"{service} {data['IPAddress']}:{port} ({network})"
                targets.append((name, data["IPAddress"], port))
                if network == stack.networks["codegen"].name and (service, port) in {
                    ("redis", 6379),
                    ("postgres", 5432),
                }:
                    allowed.add(name)
    gateway = stack.client.networks.get(stack.networks["codegen"].name).attrs
    gateway_ip = gateway["IPAM"]["Config"][0]["Gateway"]
    published = [stack.published("redis", 6379), stack.published("postgres", 5432), stack.published("api", 8000)]
    # The run's published ports, and the machine's own servers (bound to its loopback).
    for port in sorted({*(p for _, p in published), 5432, 6379, 4222}):
        targets.append((f"host {gateway_ip}:{port}", gateway_ip, port))
    return targets, allowed


def test_codegen_reaches_redis_and_postgresql_as_itself_and_nothing_else(stack: Stack) -> None:
    """codegen runs generated code. From inside its container: Redis and PostgreSQL answer on
    the ports the policy names, no other port of any container of the run nor the host's does,
    it has no route out (an internal network), PostgreSQL's owner cannot log in from it even
    with the password (pg_hba.conf: the owner over the Unix socket alone), and its own login
    is refused a forged SagaCompleted in Redis and a row in ``events``."""
    codegen = stack.container(Service.CODEGEN)
    targets, allowed = reach_targets(stack)
    code, out = codegen.exec_run(["python", "-c", REACH, json.dumps(targets)])
    assert code == 0, out
    found = json.loads(out)
    assert {name for name, state in found.items() if state == "open"} == allowed, found
    assert found["default route"] == "no", found
    owner = (
        f"postgresql://alphasaga:{stack.variables['POSTGRES_PASSWORD']}@postgres:5432/alphasaga"
        "?sslmode=verify-full&sslrootcert=/tls/ca.crt"
    )
    code, out = codegen.exec_run(["python", "-c", FORGE, owner])
    assert code == 0, out
    forged = json.loads(out)
    assert forged["redis"] == "NoPermissionError", forged
    assert forged["events"] == "permission denied", forged
    assert "pg_hba.conf rejects connection" in forged["owner"], forged


def test_a_research_saga_completes_with_its_artifacts(stack: Stack, tmp_path: Path) -> None:
    result = stack.cli("submit", "--dataset", "sp500", "--start", "2008-01-01", "--wait", "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    saga_id = next(line.split()[1] for line in result.stderr.splitlines() if line.endswith(" submitted"))
    wait_completed(stack, saga_id)
    listed = stack.cli("artifacts", saga_id, "--out", str(tmp_path), "--json")
    assert listed.returncode == 0, listed.stderr
    artifacts = json.loads(listed.stdout)
    assert {"code", "model", "report", "chart"} <= {a["kind"] for a in artifacts}, artifacts
    chart = next(Path(a["path"]) for a in artifacts if a["kind"] == "chart")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = next(Path(a["path"]) for a in artifacts if a["kind"] == "report")
    assert json.loads(report.read_text())["metrics"]


def test_the_ml_container_killed_in_the_middle_of_a_saga_comes_back_and_the_saga_completes(stack: Stack) -> None:
    # Frozen inside a blocking read (ALPHASAGA_BLOCK_MS is long for ml), the consumer
    # still takes delivery of the saga's ml command from Redis: killed then, it dies
    # holding the command, as if it had crashed at work, whatever the machine's speed.
    # A fresh process makes sure that read is recent, so it outlasts the saga's first steps.
    stack.container(Service.ML).restart(timeout=stack.stop_grace(Service.ML))
    stack.wait_healthy(Service.ML)
    wait_blocked_read(stack, Service.ML)
    stack.container(Service.ML).pause()
    saga_id = submit(stack)
    wait_pending(stack, Service.ML)
    stack.container(Service.ML).kill(signal="SIGKILL")
    assert stack.wait_exit(Service.ML) == 137
    assert pending(stack, Service.ML) == 1  # still held by the dead consumer
    assert not replies(stack, Service.ML, saga_id)
    stack.container(Service.ML).start()
    stack.wait_healthy(Service.ML)
    wait_completed(stack, saga_id)
    assert pending(stack, Service.ML) == 0
    assert [r["type"] for r in replies(stack, Service.ML, saga_id)] == ["ml.ModelTrained"]


def test_codegen_stopped_with_sigterm_while_it_works_turns_unready_and_loses_no_entry(stack: Stack) -> None:
    saga_id = submit(stack, start="2009-01-01")
    watch = ReadinessWatch(stack.http_address(Service.CODEGEN))
    watch.start()
    wait_pending(stack, Service.CODEGEN)
    signalled = time.monotonic()
    stack.container(Service.CODEGEN).kill(signal="SIGTERM")
    code = stack.wait_exit(Service.CODEGEN, timeout=stack.stop_grace(Service.CODEGEN) + 30)
    assert code == 0, stack.logs(Service.CODEGEN)[-3000:]
    watch.halt.set()
    watch.join(10)
    answers = [(status, body) for _, status, body in watch.answers]
    draining = [
        i
        for i, (t, status, body) in enumerate(watch.answers)
        if t >= signalled and status == 503 and json.loads(body) == {"status": "draining"}
    ]
    assert draining, answers
    # From the first "draining" on, it never answers ready again until it is gone (the port
    # refused); after that the file's restart policy may already have started the next one.
    gone = next((i for i in range(draining[0], len(answers)) if answers[i][0] == 0), len(answers))
    assert not [a for a in answers[draining[0] : gone] if a[0] == 200], answers
    # Finished (its reply is out and the entry acked) or still pending, to be reclaimed:
    # a command that is neither has been lost.
    finished = bool(replies(stack, Service.CODEGEN, saga_id))
    assert finished or pending(stack, Service.CODEGEN) >= 1
    stack.container(Service.CODEGEN).start()
    stack.wait_healthy(Service.CODEGEN)
    summary = wait_completed(stack, saga_id)
    assert pending(stack, Service.CODEGEN) == 0
    attempts = {json.loads(r["body"])["attempt"] for r in replies(stack, Service.CODEGEN, saga_id)}
    assert attempts == {1}, (attempts, summary)  # no retry after a timeout: nothing was lost


def test_a_worker_started_while_postgres_is_down_waits_not_ready_and_recovers_by_itself(stack: Stack) -> None:
    stack.container("postgres").stop(timeout=stack.stop_grace("postgres"))
    try:
        late = stack.build(
            Service.BACKTEST, name=stack.name("backtest-late"), restart=False, ALPHASAGA_CONNECT_TIMEOUT_S="2"
        )
        stack.containers["backtest-late"] = late.start()
        address = (stack.address("backtest-late", "services"), 8000)
        while probe(address, "/health/live")[0] != 200:  # or it exits, or the test times out
            assert stack.container("backtest-late").attrs["State"]["Running"], stack.logs("backtest-late")[-3000:]
            time.sleep(0.5)
        status, body = probe(address, "/health/ready")
        assert status == 503 and "postgres" in body, body
        time.sleep(5)  # a while without its database: it waits, it does not exit
        assert stack.container("backtest-late").attrs["State"]["Running"], stack.logs("backtest-late")[-3000:]
    finally:
        stack.container("postgres").start()
    stack.wait_healthy("postgres")
    stack.wait_healthy("backtest-late")
    assert probe(address, "/health/ready")[0] == 200
    assert "recovered after" in stack.logs("backtest-late")


def test_taking_everything_down_leaves_nothing_behind(stack: Stack) -> None:
    stack.down()
    assert stack.labelled() == {"containers": [], "networks": [], "volumes": []}
    assert {v.name for v in stack.client.volumes.list()} - stack.volumes_before == set()
