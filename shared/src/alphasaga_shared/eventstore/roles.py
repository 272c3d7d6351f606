"""PostgreSQL roles per service for the event store's tables (issue #30).

``GRANTS`` says, table by table, what each kind of role may do: the orchestrator writes the
saga events, the outbox and its own tables; a worker writes its artifacts (and marks a
step's artifacts undone) and nothing else; the front ends (``api``: the API and the CLI)
read. Packages with tables of their own give theirs the same way (``alphasaga_accounts.
roles``). ``render`` is pure: ``alphasaga acl roles`` prints the SQL. The append-only
triggers stay the second wall: no role is granted UPDATE or DELETE on ``events``.

The front ends record a start's outbox row in ``events`` in the same transaction as its
owner (docs/decisions/0013), so ``api`` may INSERT into ``events``: row-level security
limits that to ``orchestrator.StartResearch`` and ``orchestrator.StartCampaign`` rows of
``outbox:`` streams, so a front end cannot write a saga's events or another message into
the outbox (a campaign's child's end, among them).

The ``archive`` role runs ``alphasaga archive run`` (docs/decisions/0018): it reads the saga
list and marks its rows archived, copies finished sagas' rows to the archive and DELETEs
them from ``events``, which only the archive's path passes (the table's trigger checks every
row removed against its archived copy). Nobody else may write the archive; everyone who
reads the log may read it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from alphasaga_contracts import Service
from alphasaga_contracts.steps import KINDS

from .migrations import migrate

ORCHESTRATOR = Service.ORCHESTRATOR.value
WORKER = "worker"  # every worker service's role gets these
FRONT_END = "api"
ARCHIVIST = "archive"  # the retention job (alphasaga archive run)

ALL = "SELECT, INSERT, UPDATE, DELETE"
# The row types a front end records (its outbox row): a research start, a campaign's start.
STARTS = ("orchestrator.StartResearch", "orchestrator.StartCampaign")
GRANTS: dict[str, dict[str, str]] = {
    # Every service reads the ledger at start: a current schema needs no more (the owner
    # migrates it: ``alphasaga migrate``).
    "schema_migrations": {ORCHESTRATOR: "SELECT", WORKER: "SELECT", FRONT_END: "SELECT", ARCHIVIST: "SELECT"},
    "events": {ORCHESTRATOR: "SELECT, INSERT", FRONT_END: "SELECT, INSERT", ARCHIVIST: "SELECT, DELETE"},
    "subscription_positions": {ORCHESTRATOR: ALL, FRONT_END: "SELECT"},
    # A trigger on ``events`` opens an outbox with its first row, as the role that writes it
    # (a front end records starts); the relay closes them (docs/decisions/0028).
    "open_outboxes": {ORCHESTRATOR: ALL, FRONT_END: "INSERT"},
    "inbox": {ORCHESTRATOR: ALL},
    "saga_timers": {ORCHESTRATOR: ALL, FRONT_END: "SELECT"},
    "snapshots": {ORCHESTRATOR: ALL, FRONT_END: "SELECT"},
    "saga_summaries": {ORCHESTRATOR: ALL, FRONT_END: "SELECT", ARCHIVIST: "SELECT, UPDATE"},
    "archived_events": {ARCHIVIST: "SELECT, INSERT", ORCHESTRATOR: "SELECT", FRONT_END: "SELECT"},
    "archive_manifests": {ARCHIVIST: "SELECT, INSERT", ORCHESTRATOR: "SELECT", FRONT_END: "SELECT"},
    "undone_steps": {ORCHESTRATOR: ALL, WORKER: "SELECT, INSERT", FRONT_END: "SELECT"},
    "artifact_blobs": {WORKER: "SELECT, INSERT, DELETE", FRONT_END: "SELECT"},
    "artifacts": {WORKER: ALL, FRONT_END: "SELECT"},
}


def role_names(prefix: str) -> dict[str, str]:
    """Each service's role (and the front ends'), by unprefixed name."""
    names = [ORCHESTRATOR, *(w.value for w in KINDS.services()), FRONT_END, ARCHIVIST]
    return {n: f"{prefix}{n}" for n in names}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _holders(holder: str, roles: Mapping[str, str]) -> list[str]:
    if holder == WORKER:
        return [roles[w.value] for w in KINDS.services()]
    return [roles[holder]]


def render(schema: str, prefix: str, grants: Iterable[Mapping[str, Mapping[str, str]]] = (GRANTS,)) -> str:
    """The SQL that creates the roles (NOLOGIN: an operator gives each a login and a
    password) and grants each exactly what ``grants`` say on ``schema``'s tables; run by the
    tables' owner after the migrations. Running it again changes nothing."""
    roles = role_names(prefix)
    lines = [f"-- AlphaSaga's roles for schema {schema} (alphasaga acl roles)"]
    for role in roles.values():
        lines.append(
            f"DO $$ BEGIN CREATE ROLE {_ident(role)} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
        )
        lines.append(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {_ident(role)};")
    for table_grants in grants:
        for table, by_holder in table_grants.items():
            for holder, privileges in by_holder.items():
                for role in _holders(holder, roles):
                    lines.append(f"GRANT {privileges} ON {_ident(schema)}.{_ident(table)} TO {_ident(role)};")
    lines.extend(_event_rows(schema, roles))
    return "\n".join(lines) + "\n"


def _event_rows(schema: str, roles: Mapping[str, str]) -> list[str]:
    """Row-level security on ``events``: the orchestrator any row, the front ends read any
    and add only starts to an outbox stream, the archive any row (its grants say what it may
    do with them: read and move to the archive). The tables' owner (the migrations) is not
    subject to it."""
    events = f"{_ident(schema)}.events"
    orchestrator, front = _ident(roles[ORCHESTRATOR]), _ident(roles[FRONT_END])
    starts = ", ".join(f"'{t}'" for t in STARTS)
    policies = {  # policy name -> its rule
        f"{roles[ORCHESTRATOR]}_rows": f"FOR ALL TO {orchestrator} USING (true) WITH CHECK (true)",
        f"{roles[ARCHIVIST]}_rows": f"FOR ALL TO {_ident(roles[ARCHIVIST])} USING (true)",
        f"{roles[FRONT_END]}_reads": f"FOR SELECT TO {front} USING (true)",
        f"{roles[FRONT_END]}_records_starts": (
            f"FOR INSERT TO {front} WITH CHECK (stream_id LIKE 'outbox:%' AND type IN ({starts}))"
        ),
    }
    lines = [f"ALTER TABLE {events} ENABLE ROW LEVEL SECURITY;"]
    for name, rule in policies.items():
        lines.append(f"DROP POLICY IF EXISTS {_ident(name)} ON {events};")
        lines.append(f"CREATE POLICY {_ident(name)} ON {events} {rule};")
    return lines


@dataclass(frozen=True, slots=True)
class Tables:
    """A package's tables: its migrations (``package``'s folder, numbered in ``ledger``) and
    what each role may do on them."""

    package: str | None  # None: the event store's own
    ledger: str
    grants: Mapping[str, Mapping[str, str]]


EVENT_STORE = Tables(None, "schema_migrations", GRANTS)


async def provision(
    conn: asyncpg.Connection,
    schema: str,
    prefix: str,
    tables: Sequence[Tables],
    logins: Mapping[str, str] | None = None,
) -> list[str]:
    """The owner step (``alphasaga migrate``), on a connection of the tables' owner: every
    package's migrations, the roles with their grants (``render``), and ``LOGIN`` with a
    password for each role in ``logins`` (by unprefixed name). Returns the migrations
    applied; running it again changes nothing but the passwords."""
    names = role_names(prefix)
    unknown = sorted(set(logins or {}) - set(names))
    if unknown:
        raise ValueError(f"logins for no such role: {', '.join(unknown)} (roles: {', '.join(names)})")
    applied: list[str] = []
    for t in tables:
        applied += await migrate(conn, schema, package=t.package, ledger=t.ledger)
    await conn.execute(render(schema, prefix, [t.grants for t in tables]))
    for name, password in (logins or {}).items():
        # ALTER ROLE takes no parameters: the password goes in as a quoted literal.
        literal = "'" + password.replace("'", "''") + "'"
        await conn.execute(f"ALTER ROLE {_ident(names[name])} LOGIN PASSWORD {literal}")
    return applied
