"""Least privilege in PostgreSQL (issue #30): the roles ``alphasaga acl roles`` renders,
created on the real server under names of this test's own and dropped afterwards. Each
statement runs as each role (``SET LOCAL ROLE``) in a transaction rolled back, and must
succeed exactly for the roles the policy below names, and fail with ``permission
denied`` (or a row policy's refusal, or an append-only trigger's) for every other. The roles come from the contract
(``KINDS``): a new worker service gets its rows by itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from alphasaga_accounts.ratelimits import PostgresCounters
from alphasaga_accounts.roles import GRANTS as ACCOUNT_GRANTS
from alphasaga_accounts.store import AccountStore, migrate_accounts
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_contracts.steps import KINDS
from alphasaga_shared.bus.redis_log import RedisLog
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore, outbox_channel, outbox_stream
from alphasaga_shared.eventstore.artifacts import ArtifactStore
from alphasaga_shared.eventstore.migrations import SchemaBehind
from alphasaga_shared.eventstore.roles import GRANTS, render
from alphasaga_shared.outbox import Relay
from alphasaga_shared.outbox_rows import notice, outbox_events
from alphasaga_shared.wire import Outgoing, envelope_for
from conftest import Servers
from tests.support.helpers import eventually

ORCHESTRATOR, API, ARCHIVE = "orchestrator", "api", "archive"
WORKERS = frozenset(w.value for w in KINDS.services())
EVERYONE = frozenset({ORCHESTRATOR, API, ARCHIVE, *WORKERS})
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
    "SELECT count(*) FROM schema_migrations": EVERYONE,  # read at start: is the schema current?
    "SELECT count(*) FROM accounts_migrations": frozenset({API}),
    "DELETE FROM schema_migrations": frozenset(),
    "SELECT count(*) FROM events": frozenset({ORCHESTRATOR, API, ARCHIVE}),
    "SELECT count(*) FROM archived_events": frozenset({ORCHESTRATOR, API, ARCHIVE}),
    "INSERT INTO archived_events SELECT * FROM events": frozenset({ARCHIVE}),
    "DELETE FROM archived_events": frozenset(),
    (
        "INSERT INTO archive_manifests (saga_id, events, outbox, sha256, finished_at)"
        f" VALUES ('{uuid.uuid4()}', 1, 0, '{SHA}', now())"
    ): frozenset({ARCHIVE}),
    "UPDATE saga_summaries SET archived_at = now()": frozenset({ORCHESTRATOR, ARCHIVE}),
    "INSERT INTO inbox (consumer, message_id) VALUES ('orchestrator', 'm1')": frozenset({ORCHESTRATOR}),
    "DELETE FROM saga_timers": frozenset({ORCHESTRATOR}),
    "DELETE FROM snapshots": frozenset({ORCHESTRATOR}),
    "UPDATE subscription_positions SET epoch = epoch + 1": frozenset({ORCHESTRATOR}),
    "DELETE FROM saga_summaries": frozenset({ORCHESTRATOR}),
    "SELECT count(*) FROM saga_summaries": frozenset({ORCHESTRATOR, API, ARCHIVE}),
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
    # The API's rate-limit counters on JetStream (docs/decisions/0026): the API's alone.
    "INSERT INTO rate_limits (bucket, window_no, hits) VALUES ('login:x', 1, 1)": frozenset({API}),
    "DELETE FROM rate_limits": frozenset({API}),
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
    except asyncpg.RestrictViolationError as exc:  # granted DELETE, refused by an append-only trigger
        return "denied" if "append-only" in str(exc) else f"{exc}"
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
    """The same server as ``role``: over TCP, or the embedded server's socket (no host in
    the address, the socket's directory in its query)."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))


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
    # A current schema is only read at start: the role connects as a service does; one
    # that lacks a migration is refused with what to run (the owner's step).
    dsn = role_url(servers.database_url, roles[API])
    async with store.pool.acquire() as conn:
        last = await conn.fetchrow(
            "DELETE FROM schema_migrations WHERE number = (SELECT max(number) FROM schema_migrations) RETURNING *"
        )
        with pytest.raises(SchemaBehind, match="alphasaga migrate"):
            await EventStore.connect(dsn, schema)
        await conn.execute("INSERT INTO schema_migrations SELECT ($1::schema_migrations).*", last)
    front = await EventStore.connect(dsn, schema, max_size=2)
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
        # The rate limiter's counters on JetStream, through the module that owns them.
        counters = PostgresCounters(front.pool)
        assert [await counters.count("login:x", 7) for _ in range(2)] == [1, 2]
    finally:
        await front.close()


async def test_a_relay_publishes_what_notices_carry_only_from_sessions_of_its_own_role(
    roles: dict[str, str], store: EventStore, schema: str, servers: Servers, redis: aioredis.Redis, namespace: str
) -> None:
    """Any role may NOTIFY, so a notice carrying outbox rows (docs/decisions/0030) counts only
    from a session of the relay's own role, the orchestrator's: the front ends' role, which
    may add only starts to the outbox, cannot have a relay publish a saga's end by notice."""
    async with store.pool.acquire() as conn:
        for role in (roles[ORCHESTRATOR], roles[API]):
            await conn.execute(f'ALTER ROLE "{role}" LOGIN')
    stream = f"{namespace}:evt:sagas"

    def notice_of_an_end() -> tuple[str, str]:
        saga_id = uuid.uuid4()
        end = envelope_for(sg.SagaCompleted(saga_id=saga_id, outputs={}), correlation_id=str(saga_id))
        return end.message_id, notice(outbox_events([Outgoing(stream, end)]))

    relay_store = await EventStore.connect(role_url(servers.database_url, roles[ORCHESTRATOR]), schema, max_size=2)
    relay = Relay(relay_store, RedisLog(redis, Settings()), poll_ms=20)
    task = asyncio.create_task(relay.run())
    senders = {who: await asyncpg.connect(role_url(servers.database_url, roles[who])) for who in (API, ORCHESTRATOR)}
    try:
        await eventually(lambda: _holding(relay), timeout=30)
        _, forged_notice = notice_of_an_end()
        trusted, trusted_notice = notice_of_an_end()
        await senders[API].execute("SELECT pg_notify($1, $2)", outbox_channel(schema), forged_notice)
        await senders[ORCHESTRATOR].execute("SELECT pg_notify($1, $2)", outbox_channel(schema), trusted_notice)

        async def published() -> list[str]:
            return [f[b"message_id"].decode() for _, f in await redis.xrange(stream)]

        await eventually(published, timeout=30)  # the trusted one, sent after the forged one
        assert await published() == [trusted], "the front end's notice is not published"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for conn in senders.values():
            await conn.close()
        await relay_store.close()


async def _holding(relay: Relay) -> bool:
    return relay.holding


async def test_the_owner_step_migrates_grants_and_gives_logins_to_the_roles_named(
    servers: Servers, schema: str, tmp_path: Path
) -> None:
    """``python -m alphasaga_api.owner`` (compose's ``migrate``, the k8s Job) as the owner: a
    fresh schema is migrated, every role is granted, and the roles with a password file may
    log in; the others stay NOLOGIN. Run twice: the second run changes nothing."""
    logins = tmp_path / "logins"
    logins.mkdir()
    for role in ("ml", API):
        (logins / role).write_text(f"pw-{uuid.uuid4().hex}\n")
    prefix = f"{schema}_"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")},
        "ALPHASAGA_DATABASE_URL": servers.database_url,
        "ALPHASAGA_DATABASE_SCHEMA": schema,
        "ALPHASAGA_ROLE_PREFIX": prefix,
        "ALPHASAGA_LOGINS_DIR": str(logins),
    }
    conn = await asyncpg.connect(servers.database_url)
    try:
        for attempt in (1, 2):
            done = subprocess.run(
                [sys.executable, "-m", "alphasaga_api.owner"], env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stderr
            assert ("0 migrations applied" in done.stderr) == (attempt == 2), done.stderr
        can_login = dict(
            await conn.fetch("SELECT rolname, rolcanlogin FROM pg_roles WHERE starts_with(rolname, $1)", prefix)
        )
        assert can_login == {f"{prefix}{r}": r in ("ml", API) for r in EVERYONE}
        ml = await asyncpg.connect(role_url(servers.database_url, f"{prefix}ml"))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await ml.execute(f'SELECT count(*) FROM "{schema}".events')
            assert await ml.fetchval(f'SELECT count(*) FROM "{schema}".artifacts') == 0
        finally:
            await ml.close()
    finally:
        for role in EVERYONE:
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", f"{prefix}{role}"):
                await conn.execute(f'DROP OWNED BY "{prefix}{role}"')
                await conn.execute(f'DROP ROLE "{prefix}{role}"')
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def test_the_archive_role_moves_a_finished_saga_and_can_delete_nothing_else(
    roles: dict[str, str], store: EventStore, schema: str, servers: Servers
) -> None:
    """``alphasaga archive run``'s statements, connected as the archive role: the move passes;
    the same role's plain DELETE of a saga not archived is refused by the trigger."""
    from alphasaga_readmodel.store import ReadStore
    from alphasaga_saga.aggregate import ending_topics
    from alphasaga_shared.eventstore import NewEvent
    from alphasaga_shared.eventstore.archive import Archive

    finished, other = uuid.uuid4(), uuid.uuid4()
    for saga_id in (finished, other):
        await store.append(f"saga-{saga_id}", [NewEvent(ending_topics()[0], {})], expected_version=0)
    async with store.pool.acquire() as conn:
        await conn.execute(f'ALTER ROLE "{roles[ARCHIVE]}" LOGIN')
    dsn = role_url(servers.database_url, roles[ARCHIVE])
    archivist = await EventStore.connect(dsn, schema, max_size=2)
    try:
        async with archivist.transaction() as conn:
            moved = await Archive(archivist).move(
                conn, [finished], ended=ending_topics(), before=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            )
            await ReadStore.mark_archived(conn, [finished])
        assert [m.saga_id for m in moved] == [finished]
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await archivist.pool.execute("DELETE FROM events WHERE stream_id = $1", f"saga-{other}")
    finally:
        await archivist.close()
    assert await store.read_stream(f"saga-{finished}") == [] and len(await store.read_stream(f"saga-{other}")) == 1
