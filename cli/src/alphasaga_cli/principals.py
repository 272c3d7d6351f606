"""Each service on a login of its own (issue #30): the Redis ACL users of
``alphasaga_shared.acl`` and the PostgreSQL roles of ``alphasaga_shared.eventstore.roles``,
made for the local stack and for ``alphasaga migrate``.

The names carry the deployment's namespace (Redis: ``<namespace>-<name>``) and schema
(PostgreSQL: ``<schema>_<name>``), so that stacks sharing a server never share a login.
Passwords are random, one file per login under the data directory's ``secrets/``
(readable by its owner alone), kept across restarts."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

from alphasaga_accounts.roles import TABLES as ACCOUNT_TABLES
from alphasaga_shared.acl import ADMIN, KEDA, users
from alphasaga_shared.eventstore.roles import ARCHIVIST, EVENT_STORE, provision, role_names

SECRETS_DIR = "secrets"


def redis_prefix(namespace: str) -> str:
    return f"{namespace}-"


def role_prefix(schema: str) -> str:
    return f"{schema}_"


def redis_user_names(namespace: str) -> list[str]:
    """The Redis users the stack logs in as, by unprefixed name (services, ``api``,
    ``admin``). KEDA's is a Kubernetes deployment's: rendered without a password here, off."""
    return [u.name for u in users(namespace) if u.name != KEDA]


def database_role_names() -> list[str]:
    """The PostgreSQL roles the stack's processes log in as, by unprefixed name (services,
    ``api``). The archive's role is a job's (``alphasaga archive run``, a CronJob), not a
    process of the stack: it stays NOLOGIN here."""
    return [name for name in role_names("") if name != ARCHIVIST]


def password_files(directory: Path, names: Iterable[str]) -> dict[str, str]:
    """The password of each name from ``directory/<name>``, made (random, mode 0600) when
    missing."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    found = {}
    for name in names:
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            found[name] = path.read_text().strip()
            continue
        password = secrets.token_urlsafe(24)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        found[name] = password
    return found


def with_login(url: str, user: str, password: str | None) -> str:
    """``url`` logging in as ``user``: host, port, database and query (TLS settings) kept."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    login = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


@dataclass(frozen=True)
class RedisLogins:
    """The users one deployment's namespace has on one Redis server."""

    namespace: str
    passwords: Mapping[str, str]  # by unprefixed name

    def name(self, user: str) -> str:
        return redis_prefix(self.namespace) + user

    def url(self, server_url: str, user: str) -> str:
        return with_login(server_url, self.name(user), self.passwords[user])

    async def create(self, admin_url: str) -> None:
        """``ACL SETUSER`` each user on a server someone else runs (its other users untouched)."""
        client = aioredis.from_url(admin_url)
        try:
            for user in users(self.namespace):
                if user.name == ADMIN or user.name not in self.passwords:
                    continue  # the server's own administrator stays the admin; KEDA runs in no local stack
                rules = user.rules().split()
                await client.execute_command(  # type: ignore[no-untyped-call]
                    "ACL", "SETUSER", self.name(user.name), "reset", "on", f">{self.passwords[user.name]}", *rules
                )
        finally:
            await client.aclose()

    async def remove(self, admin_url: str) -> None:
        client = aioredis.from_url(admin_url)
        try:
            names = [self.name(u.name) for u in users(self.namespace) if u.name != ADMIN]
            await client.execute_command("ACL", "DELUSER", *names)  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()


@dataclass(frozen=True)
class DatabaseLogins:
    """The roles of one schema on one PostgreSQL server, each with LOGIN and a password."""

    schema: str
    passwords: Mapping[str, str]  # by unprefixed name

    def names(self) -> dict[str, str]:
        return role_names(role_prefix(self.schema))

    def url(self, server_url: str, role: str) -> str:
        return with_login(server_url, self.names()[role], self.passwords[role])

    async def create(self, owner_url: str) -> list[str]:
        """As the tables' owner: the migrations, then the roles and their grants, then a
        login for each. Returns the migrations applied."""
        return await migrate_as_owner(owner_url, self.schema, role_prefix(self.schema), self.passwords)

    async def remove(self, owner_url: str) -> None:
        conn = await asyncpg.connect(owner_url)
        try:
            for role in self.names().values():
                if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                    await conn.execute(f"DROP OWNED BY {_ident(role)}")  # its grants and policies here
                    await conn.execute(f"DROP ROLE {_ident(role)}")
        finally:
            await conn.close()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def migrate_as_owner(
    owner_url: str, schema: str, prefix: str, logins: Mapping[str, str] | None = None
) -> list[str]:
    """The owner step: the event store's and the accounts' migrations and roles
    (``alphasaga_shared.eventstore.roles.provision``), with a login for each role in ``logins``."""
    conn = await asyncpg.connect(owner_url)
    try:
        return await provision(conn, schema, prefix, (EVENT_STORE, ACCOUNT_TABLES), logins)
    finally:
        await conn.close()
