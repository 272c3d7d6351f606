"""Runs the installed ``alphasaga`` executable as a user would, and checks how it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.helpers import ROOT

ALPHASAGA = Path(sys.executable).parent / "alphasaga"


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def alphasaga(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120) -> Result:
    done = subprocess.run(
        [str(ALPHASAGA), *args],
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    return Result(tuple(args), done.returncode, done.stdout, done.stderr)


def assert_one_line_error(result: Result, code: int = 2, *, contains: str = "") -> str:
    """The command failed the way an operator should see it: one ``error:`` line, no traceback."""
    assert result.code == code, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result
    assert "Traceback" not in result.err, result
    error_lines = [line for line in lines if line.startswith("error:")]
    assert len(error_lines) == 1, result
    assert contains in error_lines[0], result
    return error_lines[0]
