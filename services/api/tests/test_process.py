"""``python -m alphasaga_api`` as an operator starts it: refusals are one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import Servers


def start(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
    return subprocess.run(
        [sys.executable, "-m", "alphasaga_api"], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_production_without_a_signing_key_exits_2_with_one_line(servers: Servers) -> None:
    done = start(ALPHASAGA_ENV="production", ALPHASAGA_REDIS_URL=servers.redis_url,
                 ALPHASAGA_DATABASE_URL=servers.database_url, ALPHASAGA_API_PORT="0")  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr.strip() == (
        "alphasaga-api: ALPHASAGA_API_SIGNING_KEY is not set (required when ALPHASAGA_ENV=production)"
    )


def test_an_unreachable_server_exits_2_with_one_line(servers: Servers) -> None:
    done = start(ALPHASAGA_REDIS_URL="redis://127.0.0.1:1/0", ALPHASAGA_DATABASE_URL=servers.database_url,
                 ALPHASAGA_API_PORT="0", ALPHASAGA_CONNECT_TIMEOUT_S="1")  # fmt: skip
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alphasaga-api: cannot reach Redis"), done.stderr
