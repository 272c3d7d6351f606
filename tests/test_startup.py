"""Production mode: a missing or unreachable dependency is one line and a non-zero exit,
within seconds, never a fallback to embedded servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.support.helpers import ROOT


def run(args: list[str], extra_env: dict[str, str]) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
    env.update(extra_env)
    started = time.monotonic()
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr.strip(), time.monotonic() - started


@pytest.mark.parametrize("service", ["orchestrator", "reasoning"])
def test_production_without_urls_names_what_is_missing(service: str) -> None:
    code, err, took = run([sys.executable, "-m", f"alphasaga_{service}"], {"ALPHASAGA_ENV": "production"})
    assert code == 2
    assert err.splitlines()[-1] == (
        f"alphasaga-{service}: ALPHASAGA_REDIS_URL and ALPHASAGA_DATABASE_URL not set "
        "(required when ALPHASAGA_ENV=production)"
    )
    assert len(err.splitlines()) == 1, err
    assert took < 15


def test_production_with_unreachable_redis_fails_fast(servers: object) -> None:
    code, err, took = run(
        [sys.executable, "-m", "alphasaga_orchestrator"],
        {
            "ALPHASAGA_ENV": "production",
            "ALPHASAGA_REDIS_URL": "redis://127.0.0.1:1/0",
            "ALPHASAGA_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres",
            "ALPHASAGA_CONNECT_TIMEOUT_S": "2",
        },
    )
    assert code == 2
    assert err.startswith("alphasaga-orchestrator: cannot reach Redis at redis://127.0.0.1:1/0"), err
    assert len(err.splitlines()) == 1
    assert took < 15


def test_production_with_unreachable_postgres_fails_fast(servers: object) -> None:
    redis_url = servers.redis_url  # type: ignore[attr-defined]
    code, err, took = run(
        [sys.executable, "-m", "alphasaga_orchestrator"],
        {
            "ALPHASAGA_ENV": "production",
            "ALPHASAGA_REDIS_URL": redis_url,
            "ALPHASAGA_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres",
            "ALPHASAGA_CONNECT_TIMEOUT_S": "2",
        },
    )
    assert code == 2
    assert err.startswith("alphasaga-orchestrator: cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:1"), err
    assert took < 15


def test_make_run_in_production_refuses_embedded_servers() -> None:
    code, err, took = run([sys.executable, "-m", "alphasaga_cli", "run"], {"ALPHASAGA_ENV": "production"})
    assert code == 2
    assert took < 15
    assert "ALPHASAGA_REDIS_URL and ALPHASAGA_DATABASE_URL not set" in err
    assert "embedded" not in err.lower()
