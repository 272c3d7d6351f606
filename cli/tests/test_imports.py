"""The command line's import discipline (docs/cli.md): what a status, a list or a submit
loads. Each check runs in a fresh interpreter, as the command does."""

from __future__ import annotations

import json
import subprocess
import sys

# What those commands' modules load between them, once the command line has started.
PATH_OF_STATUS_LIST_SUBMIT = (
    "alphasaga_cli.app",
    "alphasaga_client.api",
    "alphasaga_shared.bus.redis_log",
    "alphasaga_shared.held",
    "alphasaga_shared.outbox_rows",
    "alphasaga_contracts.research",
    "redis.asyncio",
    "asyncpg",
)
# Heavy, and used by none of them.
NEVER = (
    "eventsourcing",
    "pydantic_settings",
    "faststream",
    "prometheus_client",
    "tenacity",
    "opentelemetry.sdk.metrics",
    "psutil",
    "pandas",
    "numpy",
    "rich",
)


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout))


def test_status_list_and_submit_load_nothing_heavy_they_do_not_use() -> None:
    imports = "\n".join(f"import {m}" for m in PATH_OF_STATUS_LIST_SUBMIT)
    loaded = loaded_after(f"from alphasaga_cli.imports import keep_lean\nkeep_lean()\n{imports}")
    assert not loaded & set(NEVER)


def test_redis_is_spared_the_metrics_sdk_and_everyone_else_still_gets_it() -> None:
    loaded = loaded_after(
        "from alphasaga_cli.imports import keep_lean\nkeep_lean()\nimport redis.asyncio\n"
        "import redis.observability.providers as p\nassert p.OTEL_AVAILABLE is False"
    )
    assert "redis" in loaded and "opentelemetry.sdk.metrics" not in loaded
    after = loaded_after(
        "from alphasaga_cli.imports import keep_lean\nkeep_lean()\nimport redis.asyncio\n"
        "from opentelemetry.sdk.metrics import MeterProvider"
    )
    assert "opentelemetry.sdk.metrics" in after
    # Without the finder (as in the services), redis-py loads the SDK itself: the finder is
    # what keeps it out, and this test sees the day redis-py stops doing so.
    assert "opentelemetry.sdk.metrics" in loaded_after("import redis.asyncio")


def test_a_call_that_names_a_command_loads_and_builds_that_command_alone() -> None:
    loaded = loaded_after(
        "import sys\nfrom alphasaga_cli.app import build, _named_command\n"
        "app = build(_named_command(['alphasaga', 'status', 'x']))\n"
        "import typer.main\nassert list(typer.main.get_command(app).commands) == ['status']"
    )
    assert "alphasaga_cli.commands.research" in loaded
    assert not {"alphasaga_cli.commands.accounts", "alphasaga_cli.commands.campaigns"} & loaded


def test_the_help_a_mistake_or_no_command_get_every_command() -> None:
    from alphasaga_cli.app import COMMANDS

    shown = subprocess.run(
        [sys.executable, "-m", "alphasaga_cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0
    listed = {line.split()[0] for line in shown.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)
    mistaken = subprocess.run(
        [sys.executable, "-m", "alphasaga_cli", "statsu"], capture_output=True, text=True, timeout=120
    )
    assert mistaken.returncode == 2 and mistaken.stderr.count("Did you mean 'status'?") == 1, mistaken.stderr


def test_status_and_list_load_no_pydantic() -> None:
    """The settings (msgspec), the held-message board's read and the trace id shown need no
    message model: pydantic and the models cost a status a quarter of its time (docs/cli.md)."""
    loaded = loaded_after(
        "from alphasaga_cli.imports import keep_lean\nkeep_lean()\n"
        "import uuid\nimport alphasaga_cli.app, alphasaga_cli.commands.research\n"
        "import alphasaga_shared.bus.redis_log, alphasaga_shared.held\n"
        "from alphasaga_client.api import AlphaSaga\nfrom alphasaga_client.connections import load_settings\n"
        "from alphasaga_cli.output import fields, print_json, trace_link\n"
        "AlphaSaga(load_settings(), application_name='probe')\ntrace_link(uuid.uuid4(), '')"
    )
    assert "alphasaga_client.api" in loaded
    assert not {m for m in loaded if m == "pydantic" or m.startswith(("pydantic.", "pydantic_core"))}
