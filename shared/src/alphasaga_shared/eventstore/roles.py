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
the outbox (a campaign's child's end, among them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from alphasaga_contracts import Service
from alphasaga_contracts.steps import KINDS

ORCHESTRATOR = Service.ORCHESTRATOR.value
WORKER = "worker"  # every worker service's role gets these
FRONT_END = "api"

ALL = "SELECT, INSERT, UPDATE, DELETE"
# The row types a front end records (its outbox row): a research start, a campaign's start.
STARTS = ("orchestrator.StartResearch", "orchestrator.StartCampaign")
GRANTS: dict[str, dict[str, str]] = {
    "events": {ORCHESTRATOR: "SELECT, INSERT", FRONT_END: "SELECT, INSERT"},
    "subscription_positions": {ORCHESTRATOR: ALL, FRONT_END: "SELECT"},
    "inbox": {ORCHESTRATOR: ALL},
    "saga_timers": {ORCHESTRATOR: ALL, FRONT_END: "SELECT"},
    "snapshots": {ORCHESTRATOR: ALL, FRONT_END: "SELECT"},
    "saga_summaries": {ORCHESTRATOR: ALL, FRONT_END: "SELECT"},
    "undone_steps": {ORCHESTRATOR: ALL, WORKER: "SELECT, INSERT", FRONT_END: "SELECT"},
    "artifact_blobs": {WORKER: "SELECT, INSERT, DELETE", FRONT_END: "SELECT"},
    "artifacts": {WORKER: ALL, FRONT_END: "SELECT"},
}


def role_names(prefix: str) -> dict[str, str]:
    """Each service's role (and the front ends'), by unprefixed name."""
    names = [ORCHESTRATOR, *(w.value for w in KINDS.services()), FRONT_END]
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
    and add only starts to an outbox stream. The tables' owner (the migrations) is not
    subject to it."""
    events = f"{_ident(schema)}.events"
    orchestrator, front = _ident(roles[ORCHESTRATOR]), _ident(roles[FRONT_END])
    starts = ", ".join(f"'{t}'" for t in STARTS)
    policies = {  # policy name -> its rule
        f"{roles[ORCHESTRATOR]}_rows": f"FOR ALL TO {orchestrator} USING (true) WITH CHECK (true)",
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
