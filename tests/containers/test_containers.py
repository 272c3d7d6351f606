"""The five services as real containers (`make container-test`, not part of `make test`).

Redis, PostgreSQL and the five services run as separate containers on a network of
their own; the host reaches them only through ports published on 127.0.0.1, and the
services are given no endpoint outside that network (no OTLP, no LLM). From the host,
the `alphasaga` command line submits research sagas and follows them, while the test
kills the ml container with SIGKILL and stops codegen with SIGTERM in the middle of
their work. At the end everything the run created is removed, and the test checks that
no container, network or volume is left.

The images come from `make images` and `make infra-images` (IMAGE_PREFIX, IMAGE_TAG;
REDIS_IMAGE and POSTGRES_IMAGE override the last two).
"""

from __future__ import annotations

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

import pytest
import redis

from alphasaga_contracts import Service, Streams
from tests.containers.engine import Engine, detect_engine

# Each test waits on sagas of a shared machine: bounds here are against hangs, not speed.
pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

SERVICES = [s.value for s in Service]
PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/alphasaga")
TAG = os.environ.get("IMAGE_TAG", "latest")
IMAGES = {name: f"{PREFIX}/{name}:{TAG}" for name in SERVICES}
REDIS_IMAGE = os.environ.get("REDIS_IMAGE", f"{PREFIX}/redis:{TAG}")
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE", f"{PREFIX}/postgres:{TAG}")
PASSWORD = "alphasaga"
STREAMS = Streams()  # the services run with the default namespace
SAGA_TIMEOUT_S = 300


@dataclass
class Stack:
    engine: Engine
    run_id: str
    network: str
    redis_addr: tuple[str, int] = ("127.0.0.1", 0)
    postgres_addr: tuple[str, int] = ("127.0.0.1", 0)
    health_ports: dict[str, int] = field(default_factory=dict)
    volumes_before: set[str] = field(default_factory=set)

    def name(self, service: str) -> str:
        return f"{self.run_id}-{service}"

    @property
    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
        env["ALPHASAGA_REDIS_URL"] = f"redis://{self.redis_addr[0]}:{self.redis_addr[1]}/0"
        env["ALPHASAGA_DATABASE_URL"] = (
            f"postgresql://alphasaga:{PASSWORD}@{self.postgres_addr[0]}:{self.postgres_addr[1]}/alphasaga"
        )
        return env

    def cli(self, *args: str, timeout: float = SAGA_TIMEOUT_S + 60) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("alphasaga")
        cmd = [exe] if exe else [sys.executable, "-m", "alphasaga_cli"]
        return subprocess.run(
            [*cmd, *args], env=self.cli_env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def redis(self) -> redis.Redis:
        return redis.Redis(host=self.redis_addr[0], port=self.redis_addr[1], decode_responses=True)

    def service_env(self) -> list[str]:
        env = {
            "ALPHASAGA_REDIS_URL": "redis://redis:6379/0",
            "ALPHASAGA_DATABASE_URL": f"postgresql://alphasaga:{PASSWORD}@postgres:5432/alphasaga",
            # A dead consumer's entries are taken over after 3 s instead of 30 s.
            "ALPHASAGA_RECLAIM_IDLE_MS": "3000",
            "ALPHASAGA_RECLAIM_INTERVAL_MS": "500",
        }
        return [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]

    def start_service(self, service: str) -> None:
        env = self.service_env()
        if service == Service.ML:
            env += ["-e", "ALPHASAGA_BLOCK_MS=600000"]  # see the ml test
        if service == Service.CODEGEN:
            # bubblewrap needs user namespaces, which the default seccomp profile refuses, and
            # a fresh /proc, which the kernel refuses over the runtime's masked /proc paths.
            env += ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"]
            env += ["--security-opt", "systempaths=unconfined"]
        # As in Kubernetes: read-only root, /tmp the only place to write.
        self.engine.start(
            self.name(service),
            IMAGES[service],
            "--network",
            self.network,
            "--network-alias",
            service,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--stop-timeout",
            "30",
            "-p",
            "127.0.0.1::8000",
            *env,
        )


def submit(stack: Stack) -> str:
    result = stack.cli("submit", "--dataset", "sp500", "--start", "2008-01-01", "--json")
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
    networks = stack.engine.inspect(stack.name(service))["NetworkSettings"]["Networks"]
    address = networks[stack.network]["IPAddress"] + ":"
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


def probe(port: int, path: str) -> tuple[int, str]:
    """One GET on 127.0.0.1; (0, error) when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
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

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.answers: list[tuple[float, int, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            status, body = probe(self.port, "/health/ready")
            if not self.answers or self.answers[-1][1:] != (status, body):
                self.answers.append((time.monotonic(), status, body))
            time.sleep(0.002)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    cmd = detect_engine()
    if cmd is None:
        pytest.skip("no container engine (docker or podman): `make container-test` needs one")
    run_id = f"asct{uuid.uuid4().hex[:8]}"
    engine = Engine(cmd, label=f"alphasaga.container-test={run_id}")
    missing = [i for i in [*IMAGES.values(), REDIS_IMAGE, POSTGRES_IMAGE] if not engine.image_exists(i)]
    if missing:
        pytest.fail(f"images not built: {', '.join(missing)} (`make container-test` builds them)")
    s = Stack(engine=engine, run_id=run_id, network=f"{run_id}-net", volumes_before=engine.volumes())
    engine.network(s.network)
    try:
        engine.start(
            s.name("redis"),
            REDIS_IMAGE,
            "--network",
            s.network,
            "--network-alias",
            "redis",
            "-p",
            "127.0.0.1::6379",
            "--health-cmd",
            "redis-cli ping",
            "--health-interval",
            "2s",
            command=(
                "redis-server",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
                "--protected-mode",
                "no",
                "--dir",
                "/data",
            ),
        )
        engine.start(
            s.name("postgres"),
            POSTGRES_IMAGE,
            "--network",
            s.network,
            "--network-alias",
            "postgres",
            "-p",
            "127.0.0.1::5432",
            "-e",
            "POSTGRES_USER=alphasaga",
            "-e",
            f"POSTGRES_PASSWORD={PASSWORD}",
            "-e",
            "POSTGRES_DB=alphasaga",
            "--health-cmd",
            "pg_isready -h 127.0.0.1 -U alphasaga",
            "--health-interval",
            "2s",
        )
        engine.wait_healthy(s.name("redis"))
        engine.wait_healthy(s.name("postgres"))
        s.redis_addr = engine.host_port(s.name("redis"), 6379)
        s.postgres_addr = engine.host_port(s.name("postgres"), 5432)
        for service in SERVICES:
            s.start_service(service)
        for service in SERVICES:
            engine.wait_healthy(s.name(service))
            s.health_ports[service] = engine.host_port(s.name(service), 8000)[1]
        yield s
    finally:
        engine.down(s.network)


def test_a_service_without_a_redis_url_exits_at_once_with_one_line_and_code_2(stack: Stack) -> None:
    name = stack.name("no-redis-url")
    stack.engine.start(
        name,
        IMAGES["reasoning"],
        "--network",
        stack.network,
        "-e",
        f"ALPHASAGA_DATABASE_URL=postgresql://alphasaga:{PASSWORD}@postgres:5432/alphasaga",
    )
    assert stack.engine.wait_exit(name, timeout=60) == 2
    lines = stack.engine.logs(name).strip().splitlines()
    assert lines == ["alphasaga-reasoning: ALPHASAGA_REDIS_URL not set (required when ALPHASAGA_ENV=production)"]


def test_every_service_is_ready_and_reached_only_through_loopback(stack: Stack) -> None:
    for service in SERVICES:
        status, body = probe(stack.health_ports[service], "/health/ready")
        assert status == 200, (service, body)
        assert json.loads(body)["checks"] == {"redis": "ok", "postgres": "ok", "groups": "ok"}
        ports = stack.engine.inspect(stack.name(service))["NetworkSettings"]["Ports"]
        bound = {b["HostIp"] for bindings in ports.values() if bindings for b in bindings}
        assert bound == {"127.0.0.1"}, (service, ports)
        env = stack.engine.inspect(stack.name(service))["Config"]["Env"]
        assert not [e for e in env if e.startswith(("ALPHASAGA_OTLP_ENDPOINT=", "ALPHASAGA_LLM_URL="))]


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
    ml = stack.name("ml")
    # Frozen inside a blocking read (ALPHASAGA_BLOCK_MS is long for ml), the consumer
    # still takes delivery of the saga's ml command from Redis: killed then, it dies
    # holding the command, as if it had crashed at work, whatever the machine's speed.
    # A fresh process makes sure that read is recent, so it outlasts the saga's first steps.
    stack.engine.run("restart", ml)
    stack.engine.wait_healthy(ml)
    wait_blocked_read(stack, "ml")
    stack.engine.run("pause", ml)
    saga_id = submit(stack)
    wait_pending(stack, "ml")
    stack.engine.run("kill", "-s", "KILL", ml)
    assert stack.engine.wait_exit(ml) == 137
    assert pending(stack, "ml") == 1  # still held by the dead consumer
    assert not replies(stack, "ml", saga_id)
    stack.engine.run("start", ml)
    stack.engine.wait_healthy(ml)
    wait_completed(stack, saga_id)
    assert pending(stack, "ml") == 0
    assert [r["type"] for r in replies(stack, "ml", saga_id)] == ["ml.ModelTrained"]


def test_codegen_stopped_with_sigterm_while_it_works_turns_unready_and_loses_no_entry(stack: Stack) -> None:
    codegen = stack.name("codegen")
    saga_id = submit(stack)
    watch = ReadinessWatch(stack.health_ports["codegen"])
    watch.start()
    wait_pending(stack, "codegen")
    signalled = time.monotonic()
    stack.engine.run("kill", "-s", "TERM", codegen)
    assert stack.engine.wait_exit(codegen) == 0, stack.engine.logs(codegen)[-3000:]
    watch.halt.set()
    watch.join(10)
    answers = [(status, body) for _, status, body in watch.answers]
    draining = [
        i
        for i, (t, status, body) in enumerate(watch.answers)
        if t >= signalled and status == 503 and json.loads(body) == {"status": "draining"}
    ]
    assert draining, answers
    # From the first "draining" on, it never answers ready again.
    assert not [a for a in answers[draining[0] :] if a[0] == 200], answers
    # Finished (its reply is out and the entry acked) or still pending, to be reclaimed:
    # a command that is neither has been lost.
    finished = bool(replies(stack, "codegen", saga_id))
    assert finished or pending(stack, "codegen") >= 1
    stack.engine.run("start", codegen)
    stack.engine.wait_healthy(codegen)
    summary = wait_completed(stack, saga_id)
    assert pending(stack, "codegen") == 0
    attempts = {json.loads(r["body"])["attempt"] for r in replies(stack, "codegen", saga_id)}
    assert attempts == {1}, (attempts, summary)  # no retry after a timeout: nothing was lost


def test_a_worker_started_while_postgres_is_down_waits_not_ready_and_recovers_by_itself(stack: Stack) -> None:
    postgres, late = stack.name("postgres"), stack.name("backtest-late")
    stack.engine.run("stop", postgres)
    try:
        stack.engine.start(
            late,
            IMAGES[Service.BACKTEST],
            "--network",
            stack.network,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "-p",
            "127.0.0.1::8000",
            *stack.service_env(),
            "-e",
            "ALPHASAGA_WAIT_FOR_SERVERS_S=600",
            "-e",
            "ALPHASAGA_CONNECT_TIMEOUT_S=2",
        )
        port = stack.engine.host_port(late, 8000)[1]
        while probe(port, "/health/live")[0] != 200:  # or it exits, or the test times out
            assert stack.engine.state(late)["Running"], stack.engine.logs(late)[-3000:]
            time.sleep(0.5)
        status, body = probe(port, "/health/ready")
        assert status == 503 and "postgres" in body, body
        time.sleep(5)  # a while without its database: it waits, it does not exit
        assert stack.engine.state(late)["Running"], stack.engine.logs(late)[-3000:]
    finally:
        stack.engine.run("start", postgres)
    stack.engine.wait_healthy(postgres)
    stack.engine.wait_healthy(late)
    assert probe(port, "/health/ready")[0] == 200
    assert "recovered after" in stack.engine.logs(late)


def test_taking_everything_down_leaves_nothing_behind(stack: Stack) -> None:
    stack.engine.down(stack.network)
    assert stack.engine.labelled() == {"containers": [], "networks": [], "volumes": []}
    assert stack.engine.volumes() - stack.volumes_before == set()
