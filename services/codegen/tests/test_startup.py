"""No silent fallback: codegen decides its sandbox when it starts. In production it
refuses to start without bubblewrap (one line, exit 2); in development it says which
weaker sandbox it will use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alphasaga_codegen.domain import bubblewrap_available, namespaces_available


def start_codegen(env: dict[str, str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Start the service with a PATH that has neither bwrap nor unshare on it."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "alphasaga_codegen"],
        env={**env, "PATH": str(empty), **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_without_bubblewrap_exits_2_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    done = start_codegen(env, tmp_path, ALPHASAGA_ENV="production")
    assert done.returncode == 2, done.stderr
    # Beside the service's JSON log lines, the operator gets one plain line.
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("alphasaga-codegen: cannot sandbox generated code: bubblewrap")
    assert "ALPHASAGA_ENV=production requires it" in lines[0]


def test_development_without_any_sandbox_refuses_rather_than_run_unconfined(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = start_codegen(env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "no sandbox can start here" in done.stderr.strip().splitlines()[-1]


@pytest.mark.skipif(not (bubblewrap_available() and namespaces_available()), reason="needs both sandboxes")
def test_development_with_the_fallback_warns_once_at_start_up(env: dict[str, str], tmp_path: Path) -> None:
    # bwrap cannot be found, unshare can: the fallback is used and said so.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "unshare").symlink_to("/usr/bin/unshare")
    process = subprocess.Popen(
        [sys.executable, "-m", "alphasaga_codegen"],
        env={**env, "PATH": str(tmp_path / "bin")},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "ready" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=30)
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1, lines
    assert "namespaces sandbox, not bubblewrap" in warnings[0]
