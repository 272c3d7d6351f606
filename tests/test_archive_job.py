"""The archive's scheduled job (infra/k8s/base/archive.yaml): in every overlay a CronJob
that runs ``python -m alphasaga_client.archive_job`` in the api's image, one at a time,
suspended until a policy is set, setting only variables the settings read; and that module,
run as the job runs it, refuses in one line without a policy and archives with one."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore
from tests.test_k8s_manifests import OVERLAYS, env_names, of_kind, render, setting_names


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: cannot render")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_archive_runs_daily_one_at_a_time_and_waits_for_a_policy(overlay: str) -> None:
    docs = render(overlay)
    job = of_kind(docs, "CronJob")["archive"]["spec"]
    assert job["suspend"] is True and job["concurrencyPolicy"] == "Forbid"
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][-2:] == ["-m", "alphasaga_client.archive_job"]
    assert container["image"].rsplit("/", 1)[1].split(":")[0] == "api"  # the image that holds the client
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["restartPolicy"] == "Never"
    assert not env_names(container, docs) - setting_names(Settings)


def run_job(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alphasaga_client.archive_job"], env=env, capture_output=True, text=True, timeout=120
    )


async def test_the_job_refuses_without_a_policy_and_archives_with_one(env: dict[str, str], store: EventStore) -> None:
    env = {k: v for k, v in env.items() if k != "ALPHASAGA_RETENTION_HOT_DAYS"}
    refused = run_job(env)
    assert refused.returncode == 2, refused
    assert refused.stderr.strip().splitlines() == [
        "alphasaga-archive: no retention policy: set ALPHASAGA_RETENTION_HOT_DAYS (days a finished saga stays hot)"
        " or pass one"
    ]
    done = run_job({**env, "ALPHASAGA_RETENTION_HOT_DAYS": "30"})
    assert done.returncode == 0, done
    assert done.stdout.startswith("alphasaga-archive: archived 0 sagas that ended before ")
