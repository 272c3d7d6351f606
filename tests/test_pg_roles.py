"""Least privilege in PostgreSQL (issue #30): the roles ``alphasaga acl roles`` renders,
created on the real server under names of this test's own and dropped afterwards. Each
statement runs as each role (``SET LOCAL ROLE``) in a transaction rolled back, and must
succeed exactly for the roles the policy below names, and fail with ``permission
denied`` (or a row policy's refusal) for every other. The roles come from the contract
(``KINDS``): a new worker service gets its rows by itself."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from alphasaga_accounts.roles import GRANTS as ACCOUNT_GRANTS
from alphasaga_accounts.store import AccountStore, migrate_accounts
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_contracts.steps import KINDS
from alphasaga_shared.eventstore import EventStore, outbox_stream
from alphasaga_shared.eventstore.artifacts import ArtifactStore
from alphasaga_shared.eventstore.roles import GRANTS, render
from alphasaga_shared.eventstore.store import _create_pool
from alphasaga_shared.outbox import outbox_events
from alphasaga_shared.wire import Outgoing, envelope_for
from conftest import Servers

ORCHESTRATOR, API = "orchestrator", "api"
WORKERS = frozenset(w.value for w in KINDS.services())
EVERYONE = frozenset({ORCHESTRATOR, API, *WORKERS})
SHA = "0" * 64


def event(stream: str, type_: str) -> str:
    return (
        "INSERT INTO events (stream_id, version, event_id, type, data)"
        f" VALUES ('{stream}', 1, gen_random_uuid(), '{type_}', '{{}}')"
    )


# statement -> the roles that may run it (the policy of issue #30, written here)
POLICY: dict[str, frozenset[str]] = {
    event(f"saga-{uuid.uuid4()}", "sagas.SagaCompleted"): frozenset({ORCHESTRATOR}),
    event(f"outbox:{uuid.uuid4()}", "orchestrator.StartResearch"): frozenset({ORCHESTRATOR, API}),
    event(f"outbox:{uuid.uuid4()}", "orchestrator.StartCampaign"): frozenset({ORCHESTRATOR, API}),
    event(f"outbox:{uuid.uuid4()}", "orchestrator.ChildSagaEnded"): frozenset({ORCHESTRATOR}),  # a child's end
    event(f"outbox:{uuid.uuid4()}", "sagas.SagaCompleted"): frozenset({ORCHESTRATOR}),
    event(f"outbox:{uuid.uuid4()}", "ml.TrainModel"): frozenset({ORCHESTRATOR}),
    "UPDATE events SET type = 'x'": frozenset(),  # append-only: no one is granted it
    "DELETE FROM events": frozenset(),
    "SELECT count(*) FROM events": frozenset({ORCHESTRATOR, API}),
    "INSERT INTO inbox (consumer, message_id) VALUES ('orchestrator', 'm1')": frozenset({ORCHESTRATOR}),
    "DELETE FROM saga_timers": frozenset({ORCHESTRATOR}),
    "DELETE FROM snapshots": frozenset({ORCHESTRATOR}),
    "UPDATE subscription_positions SET epoch = epoch + 1": frozenset({ORCHESTRATOR}),
    "DELETE FROM saga_summaries": frozenset({ORCHESTRATOR}),
    "SELECT count(*) FROM saga_summaries": frozenset({ORCHESTRATOR, API}),
    f"INSERT INTO undone_steps (saga_id, step) VALUES ('{uuid.uuid4()}', 'ml')": frozenset({ORCHESTRATOR, *WORKERS}),
    (
        f"WITH b AS (INSERT INTO artifact_blobs (sha256, media_type, size, content) VALUES ('{SHA}', 'x', 1, 'x')"
        f" RETURNING sha256) INSERT INTO artifacts (saga_id, step, name, kind, sha256)"
        f" SELECT '{uuid.uuid4()}', 'ml', 'model', 'model', sha256 FROM b"
    ): WORKERS,
    "DELETE FROM artifacts": WORKERS,
    "SELECT count(*) FROM artifacts": frozenset({API, *WORKERS}),
    "SELECT count(*) FROM users": frozenset({API}),
    (
        "INSERT INTO users (user_id, username, password_hash, role, created_at)"
        f" VALUES ('{uuid.uuid4()}', 'intruder', 'x', 'admin', now())"
    ): frozenset({API}),
    f"INSERT INTO saga_owners (saga_id, subject, created_at) VALUES ('{uuid.uuid4()}', 'x', now())": frozenset({API}),
    "SELECT count(*) FROM audit_log": frozenset({API}),
    (
        "INSERT INTO audit_log (at, actor, action, target, outcome, detail, prev_hash, hash)"
        " VALUES (now(), 'a', 'x', 't', 'ok', '{}', 'p', 'h')"
    ): frozenset({API}),
    "DELETE FROM audit_log": frozenset(),
}


@pytest.fixture
async def roles(store: EventStore, schema: str) -> AsyncIterator[dict[str, str]]:
    """This test's roles (``<schema>_<name>``), created by the rendered SQL on a migrated
    schema and dropped afterwards with what was granted them."""
    await migrate_accounts(store.pool, schema)
    prefix = f"{schema}_"
    names = {name: f"{prefix}{name}" for name in EVERYONE}
    try:
        async with store.pool.acquire() as conn:
            await conn.execute(render(schema, prefix, (GRANTS, ACCOUNT_GRANTS)))
            await conn.execute(render(schema, prefix, (GRANTS, ACCOUNT_GRANTS)))  # again: changes nothing
        yield names
    finally:
        async with store.pool.acquire() as conn:
            for role in names.values():
                await conn.execute(f'DROP OWNED BY "{role}"')  # its grants and policies, in this database
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')


async def run_as(conn: asyncpg.Connection, role: str, schema: str, statement: str) -> str:
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(f'SET LOCAL ROLE "{role}"')
        await conn.execute(statement)
        return "ok"
    except asyncpg.InsufficientPrivilegeError as exc:
        return "denied" if "permission denied" in str(exc) or "row-level security" in str(exc) else f"{exc}"
    except asyncpg.PostgresError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await tx.rollback()


@pytest.mark.parametrize("who", sorted(EVERYONE))
async def test_every_statement_outside_a_roles_rights_is_denied(
    who: str, roles: dict[str, str], store: EventStore, schema: str
) -> None:
    wrong = []
    async with store.pool.acquire() as conn:
        for statement, allowed in POLICY.items():
            expected = "ok" if who in allowed else "denied"
            got = await run_as(conn, roles[who], schema, statement)
            if got != expected:
                wrong.append(f"{who}: {statement[:90]}: {got}, not {expected}")
    assert not wrong, "\n".join(wrong)


def role_url(database_url: str, role: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))


async def test_the_workers_and_the_front_ends_own_code_runs_on_their_roles(
    roles: dict[str, str], store: EventStore, schema: str, servers: Servers
) -> None:
    """A worker stores and undoes its artifacts, and the front ends record a start in the
    outbox with its owner, each through the modules that do it, connected as its role
    (the server trusts local connections, so a role needs only LOGIN here)."""
    async with store.pool.acquire() as conn:
        for role in roles.values():
            await conn.execute(f'ALTER ROLE "{role}" LOGIN')
    saga_id = uuid.uuid4()
    worker = await asyncpg.create_pool(
        role_url(servers.database_url, roles["ml"]), min_size=1, max_size=2, server_settings={"search_path": schema}
    )
    try:
        artifacts = ArtifactStore(worker)
        await artifacts.put(saga_id, "ml", "model", "model", b"weights", "application/octet-stream")
        assert [a.name for a in await artifacts.list(saga_id)] == ["model"]
        assert await artifacts.remove_step(saga_id, "ml") == 1
    finally:
        await worker.close()
    # Not EventStore.connect: it applies migrations, which a service's role may not (it
    # may not create a schema): the migrations are the tables' owner's (docs/security.md).
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await EventStore.connect(role_url(servers.database_url, roles[API]), schema)
    dsn = role_url(servers.database_url, roles[API])
    front = EventStore(await _create_pool(dsn, schema, 1, 2, 10.0, {}), schema, dsn)
    try:
        start = sg.StartResearch(saga_id=saga_id, workflow="research", request=ResearchRequest(dataset="sp500"))
        rows = outbox_events([Outgoing(f"ns:cmd:{ORCHESTRATOR}", envelope_for(start, correlation_id=str(saga_id)))])
        async with front.transaction() as conn:
            await AccountStore(front.pool).set_owner(saga_id, "someone", dt.datetime.now(dt.UTC), conn=conn)
            await front.append(outbox_stream(str(saga_id)), rows, expected_version=None, conn=conn)
            await front.notify_outbox(conn)
        forged = outbox_events(
            [
                Outgoing(
                    "ns:evt:sagas",
                    envelope_for(sg.SagaCompleted(saga_id=saga_id, outputs={}), correlation_id=str(saga_id)),
                )
            ]
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await front.append(outbox_stream(str(saga_id)), forged, expected_version=1)
    finally:
        await front.close()
