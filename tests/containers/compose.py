"""Compose files read as compose reads them, for the container test (issue #30): the test
starts the deployment a compose file describes, not a copy of it, so that a wrong variable,
network or mount in the file fails the test.

What is read: ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}`` interpolation, YAML
merge keys (``<<: *service``), the override rules of ``docker compose -f a.yml -f b.yml``
for the keys used here, and ``depends_on`` with its conditions. A service key that this
module does not know makes it fail rather than be left out unseen (``SERVICE_KEYS``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Every service key the deployment may use. ``build`` is the only one the test does not
# apply (the images are built before the run); ``healthcheck`` it runs itself.
SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "volumes",
    "ports",
    "networks",
    "network_mode",
    "healthcheck",
    "depends_on",
    "restart",
    "read_only",
    "tmpfs",
    "stop_grace_period",
    "security_opt",
    "mem_limit",
}
REPLACED = {"command", "entrypoint", "env_file"}  # an override replaces these whole

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\})")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution, in every string of ``value``."""
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, op, default = match.group(1), match.group(2), match.group(3)
            if op == ":-":
                return env.get(name) or default
            if op == "-":
                return env.get(name, default)
            if name not in env:
                raise KeyError(f"${{{name}}} is not set and has no default")
            return env[name]

        return _VAR.sub(one, value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def _environment(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return dict(item.split("=", 1) for item in value)
    return {k: "" if v is None else str(v) for k, v in (value or {}).items()}


def _target(volume: str) -> str:
    return volume.split(":")[1]


def merge_service(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """One service of ``-f base -f over``: mappings merged, volumes by their target path,
    other sequences joined, and ``REPLACED`` keys (and scalars) replaced."""
    merged = dict(base)
    for key, value in over.items():
        if key not in merged or key in REPLACED or not isinstance(value, (dict, list)):
            merged[key] = value
        elif key == "environment":
            merged[key] = {**_environment(merged[key]), **_environment(value)}
        elif key == "volumes":
            targets = {_target(v) for v in value}
            merged[key] = [v for v in merged[key] if _target(v) not in targets] + list(value)
        elif key == "healthcheck":
            merged[key] = {**merged[key], **value}
        elif isinstance(value, list):
            merged[key] = list(merged[key]) + [v for v in value if v not in merged[key]]
        else:
            merged[key] = {**merged[key], **value}
    return merged


@dataclass
class Project:
    services: dict[str, dict[str, Any]]
    networks: dict[str, dict[str, Any]]
    volumes: list[str]
    directory: Path

    def order(self, names: list[str]) -> list[str]:
        """``names`` and what they depend on, each after its dependencies."""
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in path:
                raise ValueError(f"depends_on cycle: {' -> '.join([*path, name])}")
            for dep in self.depends_on(name):
                visit(dep, (*path, name))
            done.append(name)

        for name in names:
            visit(name, ())
        return done

    def depends_on(self, name: str) -> dict[str, str]:
        """Each dependency of a service with its condition (``service_started`` when the
        file lists it without one)."""
        deps = self.services[name].get("depends_on") or {}
        if isinstance(deps, list):
            return dict.fromkeys(deps, "service_started")
        return {dep: spec.get("condition", "service_started") for dep, spec in deps.items()}


def load(files: list[Path], env: Mapping[str, str]) -> Project:
    """The project of ``docker compose -f files[0] -f files[1] …`` with ``env`` as the
    shell's environment."""
    services: dict[str, dict[str, Any]] = {}
    networks: dict[str, dict[str, Any]] = {}
    volumes: list[str] = []
    for path in files:
        data = interpolate(yaml.safe_load(path.read_text()), env)
        for name, spec in (data.get("services") or {}).items():
            unknown = set(spec) - SERVICE_KEYS
            if unknown:
                raise ValueError(f"{path.name}: {name} uses {sorted(unknown)}, which the container test does not apply")
            services[name] = merge_service(services.get(name, {}), spec)
        for name, spec in (data.get("networks") or {}).items():
            networks[name] = {**networks.get(name, {}), **(spec or {})}
        volumes += [v for v in data.get("volumes") or {} if v not in volumes]
    for spec in services.values():
        spec["environment"] = _environment(spec.get("environment"))
    return Project(services=services, networks=networks, volumes=volumes, directory=files[0].parent)


def seconds(duration: str) -> int:
    """``30s``, ``1m30s``, ``2m``: compose's durations, in whole seconds."""
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return int(total)


def env_file(path: Path) -> dict[str, str]:
    """A compose env file: KEY=VALUE lines, ``#`` comments, no quoting used here."""
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value
    return found
