"""A Docker-compatible API for testcontainers (issue #27), wherever the tests run.

testcontainers-python speaks Docker's API alone. Where a Docker engine runs (or DOCKER_HOST
names one) that is used as it is; where only Podman is installed (this machine, `.ci/run`),
``podman system service`` serves the same API on a socket of the session's own, started here
and stopped when the session ends. The container test and the JetStream cluster test share
this one helper, so that a session starts at most one service.

Ryuk, testcontainers' reaper, is an image on Docker Hub, which such machines cannot reach:
it is turned off (unless TESTCONTAINERS_RYUK_DISABLED says otherwise), and each test that
starts containers removes them by its own label and checks that nothing is left.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors

_STARTED: dict[str, str] = {}  # the one socket a session started: "docker_host"


def _answers(base_url: str) -> bool:
    try:
        client = docker.DockerClient(base_url=base_url, timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, OSError):
        return False
    finally:
        client.close()


@contextmanager
def docker_api(timeout: float = 60) -> Iterator[str | None]:
    """Yields the DOCKER_HOST testcontainers will use (also put in ``os.environ``), or None
    when there is no engine at all. A Podman service started here is stopped on exit."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    for candidate in (os.environ.get("DOCKER_HOST"), _STARTED.get("docker_host"), "unix:///var/run/docker.sock"):
        if candidate and _answers(candidate):
            os.environ["DOCKER_HOST"] = candidate
            yield candidate
            return
    podman = shutil.which("podman")
    if podman is None:
        yield None
        return
    work = Path(tempfile.mkdtemp(prefix="alphasaga-podman-"))
    url = f"unix://{work / 'podman.sock'}"
    # --time=0: the service never exits by itself while the session runs; we end it.
    service = subprocess.Popen(
        [podman, "system", "service", "--time=0", url],
        stdout=subprocess.DEVNULL,
        stderr=(work / "service.log").open("w"),
    )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url):
            if service.poll() is not None or time.monotonic() > deadline:
                log = (work / "service.log").read_text()[-2000:]
                raise RuntimeError(f"podman system service did not answer on {url}:\n{log}")
            time.sleep(0.2)
        previous = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = _STARTED["docker_host"] = url
        try:
            yield url
        finally:
            _STARTED.pop("docker_host", None)
            if previous is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        shutil.rmtree(work, ignore_errors=True)
