"""``python -m alphasaga_api.owner``: the owner step as a one-shot container (compose's
``migrate``, Kubernetes' ``alphasaga-migrate`` Job), from the api's image, which holds the
event store's and the accounts' migrations: every migration, the services' roles with
their grants, and a login for each role with a password file in ``ALPHASAGA_LOGINS_DIR``
(one file per role: ``orchestrator``, ``ml``, ``api``…, as a Secret is mounted). It logs in
with ``ALPHASAGA_DATABASE_URL``, the tables' owner's; the services then log in as their
roles (``alphasaga migrate`` does the same from the command line). Exits 2 with one line
when the database cannot be reached or a setting is wrong."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg

from alphasaga_accounts.roles import TABLES as ACCOUNT_TABLES
from alphasaga_shared.config import ConfigError, Settings, redact
from alphasaga_shared.eventstore.roles import EVENT_STORE, provision
from alphasaga_shared.mounted import read_secret_files

DEFAULT_PREFIX = "alphasaga_"


async def run(settings: Settings, prefix: str, logins: dict[str, str]) -> list[str]:
    if not settings.database_url:
        raise ValueError("ALPHASAGA_DATABASE_URL is not set (the tables' owner's URL)")
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=settings.connect_timeout_s)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ConnectionError(f"cannot reach PostgreSQL at {redact(settings.database_url)}: {exc}") from None
    try:
        return await provision(conn, settings.database_schema, prefix, (EVENT_STORE, ACCOUNT_TABLES), logins)
    finally:
        await conn.close()


def main() -> None:
    try:
        settings = Settings()
    except ConfigError as exc:
        print(f"alphasaga-migrate: {exc}", file=sys.stderr)
        sys.exit(2)
    prefix = os.environ.get("ALPHASAGA_ROLE_PREFIX", DEFAULT_PREFIX)
    directory = os.environ.get("ALPHASAGA_LOGINS_DIR")
    try:
        logins = read_secret_files(Path(directory)) if directory else {}
        applied = asyncio.run(run(settings, prefix, logins))
    except (ValueError, ConnectionError, OSError) as exc:
        print(f"alphasaga-migrate: {exc}", file=sys.stderr)
        sys.exit(2)
    print(
        f"alphasaga-migrate: schema {settings.database_schema} current ({len(applied)} migrations applied);"
        f" roles {prefix}* granted; logins for {', '.join(logins) or 'none'}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
