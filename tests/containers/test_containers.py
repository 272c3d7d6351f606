"""The five services as real containers (`make container-test`, not part of `make test`).

Redis, PostgreSQL and the five services run as separate containers on networks of their
own; the host reaches them only through ports published on 127.0.0.1, and the services
are given no endpoint outside those networks (no OTLP, no LLM). As a deployment should
(issue #30): Redis and PostgreSQL speak TLS alone, with certificates of a local CA that
`infra/tls/make-certs.sh` makes for the run; Redis loads the rendered ACL file and
PostgreSQL gets the services' roles from the owner step (`python -m alphasaga_api.owner`,
a one-shot on a network of its own, the only place PostgreSQL's owner may log in from);
each service logs in as itself, over `rediss://` and `sslmode=verify-full`. codegen, which
runs generated code, is on a network with Redis and PostgreSQL alone. From the host,
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
from alphasaga_shared.acl import render as render_acl
from alphasaga_shared.acl import users as acl_users
from alphasaga_shared.eventstore.roles import role_names
from tests.containers.engine import Engine, detect_engine
from tests.support.tls_servers import make_certs

# Each test waits on sagas of a shared machine: bounds here are against hangs, not speed.
pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

SERVICES = [s.value for s in Service]
PREFIX = os.environ.get("IMAGE_PREFIX", "localhost/alphasaga")
TAG = os.environ.get("IMAGE_TAG", "latest")
IMAGES = {name: f"{PREFIX}/{name}:{TAG}" for name in SERVICES}
REDIS_IMAGE = os.environ.get("REDIS_IMAGE", f"{PREFIX}/redis:{TAG}")
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE", f"{PREFIX}/postgres:{TAG}")
PASSWORD = "alphasaga"  # PostgreSQL's owner (the tables'), which only the owner step uses
STREAMS = Streams()  # the services run with the default namespace
# The uid and gid the Redis and PostgreSQL images run as (Debian's packages): their copy of
# the server's key is theirs, as the servers require.
SERVER_IDS = {"redis": (100, 101), "postgres": (100, 102)}
SAGA_TIMEOUT_S = 300


@dataclass
class Stack:
    engine: Engine
    run_id: str
    network: str
    work: Path
    redis_addr: tuple[str, int] = ("127.0.0.1", 0)
    postgres_addr: tuple[str, int] = ("127.0.0.1", 0)
    health_ports: dict[str, int] = field(default_factory=dict)
    volumes_before: set[str] = field(default_factory=set)
    redis_passwords: dict[str, str] = field(default_factory=dict)  # by ACL user, unprefixed
    role_passwords: dict[str, str] = field(default_factory=dict)  # by PostgreSQL role, unprefixed

    def name(self, service: str) -> str:
        return f"{self.run_id}-{service}"

    @property
    def codegen_network(self) -> str:
        return f"{self.run_id}-codegen-net"

    @property
    def admin_network(self) -> str:
        return f"{self.run_id}-admin-net"

    def network_of(self, service: str) -> str:
        return self.codegen_network if service == Service.CODEGEN else self.network

    @property
    def ca(self) -> Path:
        return self.work / "ca" / "ca.crt"

    def redis_url(self, login: str, host: str = "redis", port: int = 6379, ca: str = "/ca/ca.crt") -> str:
        return f"rediss://alphasaga-{login}:{self.redis_passwords[login]}@{host}:{port}/0?ssl_ca_certs={ca}"

    def database_url(self, login: str, host: str = "postgres", port: int = 5432, ca: str = "/ca/ca.crt") -> str:
        return (
            f"postgresql://alphasaga_{login}:{self.role_passwords[login]}@{host}:{port}/alphasaga"
            f"?sslmode=verify-full&sslrootcert={ca}"
        )

    @property
    def cli_env(self) -> dict[str, str]:
        """The command line from the host, as the front ends' login (api)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
        env["ALPHASAGA_REDIS_URL"] = self.redis_url("api", *self.redis_addr, ca=str(self.ca))
        env["ALPHASAGA_DATABASE_URL"] = self.database_url("api", *self.postgres_addr, ca=str(self.ca))
        return env

    def cli(self, *args: str, timeout: float = SAGA_TIMEOUT_S + 60) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("alphasaga")
        cmd = [exe] if exe else [sys.executable, "-m", "alphasaga_cli"]
        return subprocess.run(
            [*cmd, *args], env=self.cli_env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def redis(self) -> redis.Redis:
        """The test's own look into Redis, as admin."""
        return redis.Redis(
            host=self.redis_addr[0],
            port=self.redis_addr[1],
            ssl=True,
            ssl_ca_certs=str(self.ca),
            username="alphasaga-admin",
            password=self.redis_passwords["admin"],
            decode_responses=True,
        )

    def service_env(self, service: str) -> list[str]:
        env = {
            "ALPHASAGA_REDIS_URL": self.redis_url(service),
            "ALPHASAGA_DATABASE_URL": self.database_url(service),
            # A dead consumer's entries are taken over after 3 s instead of 30 s.
            "ALPHASAGA_RECLAIM_IDLE_MS": "3000",
            "ALPHASAGA_RECLAIM_INTERVAL_MS": "500",
        }
        return ["-v", f"{self.work / 'ca'}:/ca:ro", *(arg for k, v in env.items() for arg in ("-e", f"{k}={v}"))]

    def start_service(self, service: str) -> None:
        env = self.service_env(service)
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
            self.network_of(service),
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


def prepare(s: Stack) -> None:
    """The run's certificates, the Redis users' ACL file and the passwords, in ``s.work``:
    each server gets a copy of what it reads, owned by the uid it runs as."""
    certs = make_certs(s.work / "certs")
    (s.work / "ca").mkdir()
    shutil.copy(certs / "ca.crt", s.ca)
    s.ca.chmod(0o644)
    s.redis_passwords = {u.name: uuid.uuid4().hex for u in acl_users(STREAMS.namespace)}
    s.role_passwords = {name: uuid.uuid4().hex for name in role_names("")}
    acl = render_acl(STREAMS.namespace, s.redis_passwords, anonymous_ping=True)  # PING alone: the health check
    logins = s.work / "logins"
    logins.mkdir()
    for name, password in s.role_passwords.items():
        (logins / name).write_text(password + "\n")
        (logins / name).chmod(0o644)  # read by the one-shot's uid; the directory is the run's
    for server, (uid, gid) in SERVER_IDS.items():
        own = s.work / server
        own.mkdir()
        for f in ("ca.crt", "server.crt", "server.key"):
            shutil.copy(certs / f, own / f)
        if server == "redis":
            (own / "users.acl").write_text(acl)
        else:
            (own / "pg_hba.conf").write_text(pg_hba(subnet(s.engine, s.admin_network)))
        for path in [own, *own.iterdir()]:
            os.chown(path, uid, gid)
            path.chmod(0o700 if path.is_dir() else 0o600)


def subnet(engine: Engine, network: str) -> str:
    info = json.loads(engine.run("network", "inspect", network).stdout)[0]
    return str(info["subnets"][0]["subnet"])


def pg_hba(admin_subnet: str) -> str:
    """TLS only; the tables' owner (the owner step's login) from the admin network alone."""
    return (
        "local all all trust\n"
        f"hostssl all alphasaga {admin_subnet} scram-sha-256\n"
        "host all alphasaga 0.0.0.0/0 reject\n"
        "hostssl all all 0.0.0.0/0 scram-sha-256\n"
        "host all all 0.0.0.0/0 reject\n"
    )


def start_servers(s: Stack) -> None:
    engine = s.engine
    tls = ["--tls-cert-file", "/tls/server.crt", "--tls-key-file", "/tls/server.key"]
    tls += ["--tls-ca-cert-file", "/tls/ca.crt", "--tls-auth-clients", "no"]
    engine.start(
        s.name("redis"),
        REDIS_IMAGE,
        "--network",
        s.network,
        "--network",
        s.codegen_network,
        "--network-alias",
        "redis",
        "-v",
        f"{s.work / 'redis'}:/tls:ro",
        "-p",
        "127.0.0.1::6379",
        "--health-cmd",
        "redis-cli --tls --cacert /tls/ca.crt ping",
        "--health-interval",
        "2s",
        command=(
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            "6379",
            *tls,
            "--aclfile",
            "/tls/users.acl",
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
        "--network",
        s.codegen_network,
        "--network",
        s.admin_network,
        "--network-alias",
        "postgres",
        "-v",
        f"{s.work / 'postgres'}:/tls:ro",
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
        command=(
            "postgres",
            "-c",
            "ssl=on",
            "-c",
            "ssl_cert_file=/tls/server.crt",
            "-c",
            "ssl_key_file=/tls/server.key",
            "-c",
            "hba_file=/tls/pg_hba.conf",
        ),
    )
    engine.wait_healthy(s.name("redis"))
    engine.wait_healthy(s.name("postgres"))
    s.redis_addr = engine.host_port(s.name("redis"), 6379)
    s.postgres_addr = engine.host_port(s.name("postgres"), 5432)


def run_owner_step(s: Stack) -> None:
    """``python -m alphasaga_api.owner`` from the api's image, as the tables' owner, from the
    admin network: migrations, roles, a login per role."""
    name = s.name("migrate")
    s.engine.start(
        name,
        f"{PREFIX}/api:{TAG}",
        "--network",
        s.admin_network,
        "--read-only",
        "-v",
        f"{s.work / 'ca'}:/ca:ro",
        "-v",
        f"{s.work / 'logins'}:/logins:ro",
        "-e",
        f"ALPHASAGA_DATABASE_URL=postgresql://alphasaga:{PASSWORD}@postgres:5432/alphasaga"
        "?sslmode=verify-full&sslrootcert=/ca/ca.crt",
        "-e",
        "ALPHASAGA_LOGINS_DIR=/logins",
        "--entrypoint",
        "/app/.venv/bin/python",
        command=("-m", "alphasaga_api.owner"),
    )
    assert s.engine.wait_exit(name, timeout=120) == 0, s.engine.logs(name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cmd = detect_engine()
    if cmd is None:
        pytest.skip("no container engine (docker or podman): `make container-test` needs one")
    run_id = f"asct{uuid.uuid4().hex[:8]}"
    engine = Engine(cmd, label=f"alphasaga.container-test={run_id}")
    needed = [*IMAGES.values(), REDIS_IMAGE, POSTGRES_IMAGE, f"{PREFIX}/api:{TAG}"]
    missing = [i for i in needed if not engine.image_exists(i)]
    if missing:
        pytest.fail(f"images not built: {', '.join(missing)} (`make container-test` builds them)")
    s = Stack(
        engine=engine,
        run_id=run_id,
        network=f"{run_id}-net",
        work=tmp_path_factory.mktemp("containers"),
        volumes_before=engine.volumes(),
    )
    for network in (s.network, s.codegen_network, s.admin_network):
        engine.network(network)
    try:
        prepare(s)
        start_servers(s)
        run_owner_step(s)
        for service in SERVICES:
            s.start_service(service)
        for service in SERVICES:
            engine.wait_healthy(s.name(service))
            s.health_ports[service] = engine.host_port(s.name(service), 8000)[1]
        yield s
    finally:
        engine.down(s.network, s.codegen_network, s.admin_network)


def test_a_service_without_a_redis_url_exits_at_once_with_one_line_and_code_2(stack: Stack) -> None:
    name = stack.name("no-redis-url")
    stack.engine.start(
        name,
        IMAGES["reasoning"],
        "--network",
        stack.network,
        "-e",
        f"ALPHASAGA_DATABASE_URL={stack.database_url('reasoning')}",
    )
    assert stack.engine.wait_exit(name, timeout=60) == 2
    lines = stack.engine.logs(name).strip().splitlines()
    assert lines == [
        "alphasaga-reasoning: ALPHASAGA_REDIS_URL (or ALPHASAGA_BROKER_URL) not set"
        " (required when ALPHASAGA_ENV=production)"
    ]


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


def test_codegen_reaches_redis_and_postgresql_alone_and_its_login_cannot_forge(stack: Stack) -> None:
    """codegen runs generated code: its container reaches Redis's and PostgreSQL's ports and no
    other service's, PostgreSQL's owner cannot log in from it even with the password (pg_hba), and its
    own login is refused a forged SagaCompleted in Redis and a row in ``events``."""
    codegen = stack.name("codegen")
    targets = [("redis", "redis", 6379), ("postgres", "postgres", 5432)]
    for service in SERVICES:
        if service != Service.CODEGEN:
            address = stack.engine.inspect(stack.name(service))["NetworkSettings"]["Networks"][stack.network]
            targets.append((service, address["IPAddress"], 8000))
    reach = stack.engine.run("exec", codegen, "python", "-c", REACH, json.dumps(targets))
    found = json.loads(reach.stdout)
    assert found["redis"] == found["postgres"] == "open", found
    assert not [s for s in SERVICES if found.get(s) == "open"], found
    owner = f"postgresql://alphasaga:{PASSWORD}@postgres:5432/alphasaga?sslmode=verify-full&sslrootcert=/ca/ca.crt"
    forged = json.loads(stack.engine.run("exec", codegen, "python", "-c", FORGE, owner).stdout)
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
    saga_id = submit(stack, start="2009-01-01")
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
            *stack.service_env(Service.BACKTEST),
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
    stack.engine.down(stack.network, stack.codegen_network, stack.admin_network)
    assert stack.engine.labelled() == {"containers": [], "networks": [], "volumes": []}
    assert stack.engine.volumes() - stack.volumes_before == set()
