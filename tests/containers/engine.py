"""A thin driver for the container engine (docker or podman) used by the container test.

Everything the test starts carries one label, so that taking it down, and proving that
nothing is left, needs no list kept by hand."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.helpers import ROOT


def detect_engine() -> str | None:
    """The engine `make images` used: infra/docker/engine.sh decides for both."""
    if shutil.which("docker") is None and shutil.which("podman") is None:
        return None
    result = subprocess.run([str(ROOT / "infra" / "docker" / "engine.sh")], capture_output=True, text=True, check=False)
    return result.stdout.strip() or None


@dataclass
class Engine:
    cmd: str
    label: str  # key=value put on every container, network and volume of one run
    created: list[str] = field(default_factory=list)

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.cmd, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{self.cmd} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def image_exists(self, image: str) -> bool:
        return self.run("image", "inspect", image, check=False).returncode == 0

    def network(self, name: str) -> None:
        """A bridge of the run's own. Podman's bridges reach one another unless isolated;
        Docker's never do."""
        isolate = ["--opt", "isolate=true"] if self.cmd == "podman" else []
        self.run("network", "create", "--label", self.label, *isolate, name)

    def start(self, name: str, image: str, *args: str, command: tuple[str, ...] = ()) -> None:
        """Start a detached container on the run's label; ``args`` are options of ``run``."""
        self.run("run", "-d", "--name", name, "--label", self.label, *args, image, *command)
        self.created.append(name)

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.run("inspect", name).stdout)
        return data[0]

    def state(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect(name)["State"]
        return state

    def healthy(self, name: str) -> bool:
        """Runs the image's HEALTHCHECK now. Podman without systemd never schedules it by
        itself, so we ask; with Docker the daemon runs it and we read the result."""
        if self.cmd == "podman":
            return self.run("healthcheck", "run", name, check=False).returncode == 0
        status = self.state(name).get("Health", {}).get("Status")
        return bool(status == "healthy")

    def wait_healthy(self, name: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy(name):
            state = self.state(name)
            if not state.get("Running", False) and state.get("Status") not in ("created", "restarting"):
                raise AssertionError(f"{name} exited ({state.get('ExitCode')}):\n{self.logs(name)[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not healthy within {timeout}s:\n{self.logs(name)[-3000:]}")
            time.sleep(1)

    def host_port(self, name: str, container_port: int) -> tuple[str, int]:
        """The published (address, port) of a container's port."""
        line = self.run("port", name, f"{container_port}/tcp").stdout.strip().splitlines()[0]
        host, _, port = line.rpartition(":")
        return host, int(port)

    def logs(self, name: str) -> str:
        result = self.run("logs", name, check=False)
        return result.stdout + result.stderr

    def wait_exit(self, name: str, timeout: float = 60) -> int:
        return int(self.run("wait", name, timeout=timeout).stdout.strip().splitlines()[-1])

    def labelled(self) -> dict[str, list[str]]:
        """What still carries the run's label: containers, networks and volumes."""
        flt = f"label={self.label}"
        return {
            "containers": self.run("ps", "-a", "-q", "--filter", flt).stdout.split(),
            "networks": self.run("network", "ls", "-q", "--filter", flt).stdout.split(),
            "volumes": self.run("volume", "ls", "-q", "--filter", flt).stdout.split(),
        }

    def volumes(self) -> set[str]:
        return set(self.run("volume", "ls", "-q").stdout.split())

    def down(self, *networks: str) -> None:
        """Remove the run's containers (with their anonymous volumes) and its networks."""
        for name in reversed(self.created):
            self.run("rm", "-f", "-v", name, check=False, timeout=60)
        self.created.clear()
        ids = self.run("ps", "-a", "-q", "--filter", f"label={self.label}", check=False).stdout.split()
        if ids:
            self.run("rm", "-f", "-v", *ids, check=False, timeout=60)
        for network in networks:
            self.run("network", "rm", network, check=False)
