"""Numbered SQL migrations (``migrations/NNNN_name.sql``), applied under an advisory lock
so that any number of processes may start at once.

A schema that is already current is only read: a service logged in as its own role
(issue #30, ``alphasaga migrate`` runs the migrations as the tables' owner) may read the
ledger but create nothing, and needs no more to start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class SchemaBehind(RuntimeError):
    """Migrations are missing and this login may not apply them; the message says what to run."""


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str


def bundled_migrations(package: str | None = None) -> list[Migration]:
    """The migrations in ``package``'s ``migrations`` folder (by default the event store's)."""
    found: list[Migration] = []
    for item in resources.files(package or __package__).joinpath("migrations").iterdir():
        match = _NAME.match(item.name)
        if match:
            found.append(Migration(int(match.group(1)), item.name, item.read_text()))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {numbers}")
    return found


async def applied_numbers(
    conn: asyncpg.Connection | PoolConnectionProxy, schema: str, ledger: str = "schema_migrations"
) -> set[int]:
    """The migrations ``ledger`` records in ``schema`` (none when it does not exist yet, or
    when this login may not read it)."""
    exists = await conn.fetchval("SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL", schema, ledger)
    if not exists:
        return set()
    try:
        return {r["number"] for r in await conn.fetch(f'SELECT number FROM "{schema}".{ledger}')}
    except asyncpg.InsufficientPrivilegeError:
        return set()


async def migrate(
    conn: asyncpg.Connection | PoolConnectionProxy,
    schema: str,
    *,
    package: str | None = None,
    ledger: str = "schema_migrations",
) -> list[str]:
    """Create ``schema`` if needed and apply the missing migrations in it; returns their names.
    Another owner of tables (``package``) keeps its own numbering in a ``ledger`` table of its own.
    A current schema is only read; a login that may not apply what is missing gets
    ``SchemaBehind``."""
    if not ledger.isidentifier():
        raise ValueError(f"ledger {ledger!r} is not a table name")
    wanted = bundled_migrations(package)
    if {m.number for m in wanted} <= await applied_numbers(conn, schema, ledger):
        return []
    try:
        return await _apply(conn, schema, wanted, ledger)
    except asyncpg.InsufficientPrivilegeError as exc:
        user = await conn.fetchval("SELECT current_user")
        raise SchemaBehind(
            f"schema {schema} is missing migrations ({ledger}) and {user} may not apply them ({exc}):"
            " run `alphasaga migrate` as the tables' owner first"
        ) from None


async def _apply(
    conn: asyncpg.Connection | PoolConnectionProxy, schema: str, wanted: list[Migration], ledger: str
) -> list[str]:
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('alphasaga-migrations:' || $1))", schema)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {ledger} ("
            " number integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["number"] for r in await conn.fetch(f"SELECT number FROM {ledger}")}
        for m in wanted:
            if m.number in done:
                continue
            await conn.execute(m.sql)
            await conn.execute(f"INSERT INTO {ledger} (number, name) VALUES ($1, $2)", m.number, m.name)
            applied.append(m.name)
    return applied
