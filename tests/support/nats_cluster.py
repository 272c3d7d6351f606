"""A three-node JetStream cluster as containers, started through testcontainers (issue #27),
for a chaos test that kills a node with SIGKILL and starts the same container again.

The nodes share a network of the run's own and route to each other by name; each one's
client port is published on 127.0.0.1 at a port fixed before the start, so the URL list
the services were given stays true after a restart (decisions/0025)."""

from __future__ import annotations

import os
import re

import docker.errors
from testcontainers.core.container import DockerContainer
from testcontainers.core.docker_client import DockerClient
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from tests.support.own_servers import free_port

# Built from Debian's nats-server by `infra/docker/build-images.sh nats` (make chaos does it).
NATS_IMAGE = os.environ.get("NATS_IMAGE", "localhost/alphasaga/nats:latest")
READY = "Server is ready"


class Node:
    """One ``nats-server -js`` container of the cluster."""

    def __init__(self, name: str, peers: list[str], network: Network, image: str) -> None:
        self.name = name
        self.port = free_port()
        self.starts = 0
        routes = ",".join(f"nats://{peer}:6222" for peer in peers)
        command = ["-js", "-sd", "/data", "-m", "8222", "-n", name, "--cluster_name", "alphasaga"]
        # --no_advertise: clients keep to the published URLs, never the network's own addresses.
        command += ["--cluster", "nats://0.0.0.0:6222", "--routes", routes, "--no_advertise"]
        self.container = DockerContainer(image).with_command(command).with_network(network)
        self.container.with_network_aliases(name).with_name(f"alphasaga-{name}-{network.name[:8]}")
        # On loopback only, unlike with_bind_ports' all addresses: nothing outside needs it.
        self.container.ports["4222/tcp"] = ("127.0.0.1", self.port)  # type: ignore[assignment]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 60) -> None:
        # The log keeps earlier runs' lines: wait for this start's own "ready".
        ready_again = re.compile(f"(?:{READY}.*?){{{self.starts}}}", re.DOTALL)
        LogMessageWaitStrategy(ready_again).with_startup_timeout(int(timeout)).wait_until_ready(self.container)

    def create(self) -> None:
        self.container.start()
        self.starts = 1
        self._wait_ready()

    def kill9(self) -> None:
        wrapped = self.container.get_wrapped_container()
        wrapped.kill(signal="SIGKILL")
        wrapped.wait(timeout=30)

    def start(self) -> None:
        """Start the killed container again, with its JetStream store as it was left."""
        self.container.get_wrapped_container().start()
        self.starts += 1
        self._wait_ready()

    def remove(self) -> None:
        self.container.stop()


class ContainerCluster:
    """Three JetStream nodes routed to each other on a network of their own."""

    def __init__(self, size: int = 3, image: str = NATS_IMAGE) -> None:
        self.network = Network()
        self.networked = False
        names = [f"nats-{i + 1}" for i in range(size)]
        self.nodes = [Node(name, [n for n in names if n != name], self.network, image) for name in names]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        image = self.nodes[0].container.image
        try:
            DockerClient().client.images.get(image)
        except docker.errors.ImageNotFound:
            raise RuntimeError(
                f"{image} is missing: build it with `infra/docker/build-images.sh nats` (make chaos does;"
                " BASE_IMAGE=localhost/alphasaga/base:bookworm after `make base-image` where no registry answers)"
            ) from None
        self.network.create()
        self.networked = True
        for node in self.nodes:
            node.create()

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()
        if self.networked:
            self.network.remove()
