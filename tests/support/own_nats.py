"""NATS with JetStream for tests: the machine's (``ALPHASAGA_TEST_NATS_URL``, shared with
other runs, so a test removes exactly its namespace's streams and buckets), or a
``nats-server -js`` of the test session's own on a free port with a temporary store. The
chaos test's three-node cluster runs as containers (tests/support/nats_cluster.py)."""

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
    """One ``nats-server -js`` process."""

    def __init__(self, *, name: str = "n1", store: Path | None = None) -> None:
        self.binary = nats_server_binary()
        self.name = name
        self.port = free_port()
        self.dir = store or Path(tempfile.mkdtemp(prefix=f"alphasaga-nats-{name}-"))
        self.log = self.dir / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.dir / "js")]
        args += ["-n", self.name]
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
