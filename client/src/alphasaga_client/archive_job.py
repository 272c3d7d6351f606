"""``python -m alphasaga_client.archive_job``: ``alphasaga archive run`` for a scheduler whose
image holds the client but not the CLI (the Kubernetes CronJob, infra/k8s/base/archive.yaml).
Apart from ``archiving``, which the client API (``api``) is built from: importing ``api``
there would be a cycle."""

from __future__ import annotations

import asyncio
import sys

from alphasaga_shared.config import ConfigError
from alphasaga_shared.errors import ClientError

from .api import AlphaSaga
from .archiving import ArchiveRun
from .connections import load_settings


def main() -> None:
    """One ``archive run`` under the deployment's policy; a refusal is one line and exit
    code 2."""

    async def go() -> ArchiveRun:
        async with AlphaSaga(load_settings(), application_name="alphasaga-archive") as client:
            return await client.archive_run()

    try:
        run = asyncio.run(go())
    except (ClientError, ConfigError) as exc:
        print(f"alphasaga-archive: {exc}", file=sys.stderr)
        sys.exit(2)
    print(
        f"alphasaga-archive: archived {run.sagas} sagas that ended before {run.cutoff.isoformat()}:"
        f" {run.events} events and {run.outbox} outgoing messages"
    )
    for saga_id in run.skipped:
        print(f"alphasaga-archive: left hot: saga {saga_id}: its log does not end it before the cut", file=sys.stderr)


if __name__ == "__main__":
    main()
