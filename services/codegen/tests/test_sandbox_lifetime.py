"""A sandboxed runner never outlives the service that started it: killed with -9 while
a strategy runs, the service takes the runner with it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from alphasaga_codegen.domain import bubblewrap_available, namespaces_available

HOLDER = Path(__file__).with_name("sandbox_holder.py")


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("bubblewrap", marks=pytest.mark.skipif(not bubblewrap_available(), reason="no bubblewrap")),
        pytest.param("namespaces", marks=pytest.mark.skipif(not namespaces_available(), reason="no unshare")),
    ],
)
def test_a_runner_at_work_dies_with_the_service_killed_with_minus_9(kind: str, tmp_path: Path) -> None:
    log = (tmp_path / "holder.log").open("w")
    holder = subprocess.Popen([sys.executable, str(HOLDER), kind], stdout=log, stderr=subprocess.STDOUT)
    try:
        while "holding" not in (tmp_path / "holder.log").read_text():  # or it exits, or the test times out
            assert holder.poll() is None, (tmp_path / "holder.log").read_text()
            time.sleep(0.1)
        runners = descendants(holder.pid)
        assert runners, "a runner is at work"
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10  # the kernel delivers the parent-death signal at once
    while alive(runners) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(runners) == set(), "the runner outlived the service"
