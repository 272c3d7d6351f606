"""A Docker-compatible engine API for testcontainers: ``$DOCKER_HOST`` when set, the Docker
engine's socket when it answers, else Podman's (``podman system service``) on a socket of
the session's own, stopped when the session ends.

Ryuk, the reaper testcontainers would start, is an image no reachable registry serves: it
is turned off, and the session fixture removes instead every container and network that
carries the session's testcontainers label (decisions/0025)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DOCKER_SOCKET = "unix:///var/run/docker.sock"


def _answers(url: str) -> bool:
    import docker

    try:
        # The unversioned /_ping, with no version asked of the engine first: /version took
        # Podman 4.3 over 8 s on a loaded machine, and a pinned version in the path is one
        # that a newer Docker refuses as too old. The version given here is never sent.
        api = docker.APIClient(base_url=url, version="1.41", timeout=5)
        try:
            return bool(api.get(f"{api.base_url}/_ping", timeout=5).ok)
        finally:
            api.close()
    except Exception:  # not there, refused, or not an engine: the caller tries the next
        return False


@contextlib.contextmanager
def engine_api(timeout: float = 30.0) -> Iterator[str]:
    """The URL of an engine API that answers, starting ``podman system service`` when no
    other one does (and stopping it on exit)."""
    given = os.environ.get("DOCKER_HOST")
    if given:
        yield given
        return
    if _answers(DOCKER_SOCKET):
        yield DOCKER_SOCKET
        return
    podman = shutil.which("podman")
    if podman is None:
        raise RuntimeError("no container engine: DOCKER_HOST is unset, no Docker engine answers, podman is missing")
    folder = Path(tempfile.mkdtemp(prefix="alphasaga-podman-"))
    url = f"unix://{folder / 'podman.sock'}"
    log = (folder / "service.log").open("wb")
    # --time=0: the service never exits on its own while the session still needs it.
    proc = subprocess.Popen([podman, "system", "service", "--time=0", url], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                said = (folder / "service.log").read_text()
                raise RuntimeError(f"podman system service did not answer on {url}: {said}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def remove_session_leftovers() -> None:
    """Remove the containers (with their anonymous volumes) and networks of this session."""
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID

    client = DockerClient().client
    mine = {"label": f"{LABEL_SESSION_ID}={SESSION_ID}"}
    for container in client.containers.list(all=True, filters=mine):
        container.remove(force=True, v=True)
    for network in client.networks.list(filters=mine):
        network.remove()


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """DOCKER_HOST for testcontainers for the whole session, Ryuk off, leftovers removed by label."""
    from testcontainers.core.config import testcontainers_config

    with engine_api() as url:
        before = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = url
        testcontainers_config.ryuk_disabled = True
        try:
            yield url
        finally:
            try:
                remove_session_leftovers()
            finally:
                if before is None:
                    os.environ.pop("DOCKER_HOST", None)
                else:
                    os.environ["DOCKER_HOST"] = before
