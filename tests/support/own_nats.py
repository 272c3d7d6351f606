"""NATS with JetStream for tests: the machine's (``ALPHASAGA_TEST_NATS_URL``, shared with
other runs, so a test removes exactly its namespace's streams and buckets), or a
``nats-server -js`` of the test session's own on a free port with a temporary store, or
a three-node cluster on loopback ports that a chaos test may kill -9 node by node."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import nats
import nats.js.errors

from alphasaga_shared.bus import subjects
from tests.support.own_servers import free_port


def nats_server_binary() -> str:
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError(
            "nats-server is not installed and ALPHASAGA_TEST_NATS_URL is not set: the JetStream half of the"
            " conformance suite cannot run (apt-get install nats-server)"
        )
    return found


class OwnNats:
    """One ``nats-server -js`` process, or one node of a cluster (``routes``)."""

    def __init__(
        self,
        *,
        name: str = "n1",
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        store: Path | None = None,
    ) -> None:
        self.binary = nats_server_binary()
        self.name = name
        self.port = free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.dir = store or Path(tempfile.mkdtemp(prefix=f"alphasaga-nats-{name}-"))
        self.log = self.dir / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.dir / "js")]
        args += ["-n", self.name]
        if self.cluster_port is not None:
            args += ["--cluster_name", "alphasaga", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            args += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while b"Server is ready" not in self.log.read_bytes():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server not ready after {timeout} s: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnCluster:
    """Three JetStream nodes routed to each other on loopback ports."""

    def __init__(self, size: int = 3) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            OwnNats(name=f"n{i + 1}", cluster_port=port, routes=[p for p in cluster_ports if p != port])
            for i, port in enumerate(cluster_ports)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()


async def remove_namespace(url: str, namespace: str) -> None:
    """Delete the JetStream streams and key-value buckets of ``namespace`` (only those)."""
    nc = await nats.connect(url.split(",")[0], connect_timeout=5, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        prefix = f"{subjects.token(namespace)}_"
        names = await js.streams_info()
        for info in names:
            name = info.config.name or ""
            if name.startswith(prefix) or name.startswith(f"KV_{prefix}"):
                with contextlib.suppress(nats.js.errors.NotFoundError):  # deleted meanwhile
                    await js.delete_stream(name)
    finally:
        await nc.close()
