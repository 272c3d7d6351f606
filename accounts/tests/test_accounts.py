"""Accounts against real PostgreSQL, with an injected clock: logins, rotated refresh tokens
and their reuse, the lockout window and its end, API keys, and the audit log's chain; and
the client's reads from many requests at once, as the API makes them."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from alphasaga_accounts import Accounts, AuthFailed, Disabled, Locked, SessionRevoked, WeakPassword, policy
from alphasaga_client import AlphaSaga
from alphasaga_shared.config import Settings
from alphasaga_shared.errors import InvalidRequest
from alphasaga_shared.eventstore import EventStore

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def accounts(store: EventStore, clock: Clock) -> Accounts:
    acc = await Accounts.open(store.pool, store.schema, clock=clock)
    await acc.create_user("ada", PASSWORD, "researcher")
    return acc


def test_roles_are_ordered() -> None:
    assert policy.allows("admin", "viewer") and policy.allows("researcher", "researcher")
    assert not policy.allows("viewer", "researcher") and not policy.allows("researcher", "admin")
    assert not policy.allows("root", "viewer")


def test_failures_lock_only_within_the_window() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    spaced = [t0 + dt.timedelta(minutes=4 * i) for i in range(4)]  # 0, 4, 8, 12 min
    assert policy.after_failure(spaced, t0 + dt.timedelta(minutes=14)).locked_until is not None
    late = policy.after_failure(spaced, t0 + dt.timedelta(minutes=16))  # the first has left the window
    assert late.locked_until is None and len(late.recent_failures) == 4


def test_key_prefix_refuses_what_is_not_a_key() -> None:
    prefix, key = policy.new_api_key()
    assert policy.key_prefix(key) == prefix
    for bad in ("", "ask_", "ask_short_x", f"xsk_{prefix}_abc", "ask_" + "a" * 300):
        assert policy.key_prefix(bad) is None


async def test_a_short_password_and_an_unknown_role_are_refused(accounts: Accounts) -> None:
    with pytest.raises(WeakPassword):
        await accounts.create_user("bob", "short", "viewer")
    with pytest.raises(InvalidRequest):
        await accounts.create_user("bob", PASSWORD, "superuser")
    with pytest.raises(InvalidRequest):
        await accounts.create_user("ada", PASSWORD, "viewer")  # taken


async def test_login_refresh_rotates_and_reuse_revokes_the_session(accounts: Accounts) -> None:
    login = await accounts.login("ada", PASSWORD)
    assert (await accounts.session_principal(login.session_id)).role == "researcher"
    second = await accounts.refresh(login.refresh_token)
    assert second.refresh_token != login.refresh_token and second.session_id == login.session_id
    third = await accounts.refresh(second.refresh_token)
    with pytest.raises(SessionRevoked):
        await accounts.refresh(login.refresh_token)  # an old token again: stolen, or replayed
    with pytest.raises(AuthFailed):
        await accounts.refresh(third.refresh_token)  # the newest one died with the session
    with pytest.raises(AuthFailed):
        await accounts.session_principal(login.session_id)
    with pytest.raises(AuthFailed):
        await accounts.refresh("not-a-token")


async def test_logout_ends_the_session(accounts: Accounts) -> None:
    login = await accounts.login("ada", PASSWORD)
    await accounts.logout(login.session_id, actor="user:ada")
    with pytest.raises(AuthFailed):
        await accounts.session_principal(login.session_id)
    with pytest.raises(AuthFailed):
        await accounts.refresh(login.refresh_token)


async def test_five_failures_lock_for_thirty_minutes_then_unlock(accounts: Accounts, clock: Clock) -> None:
    for _ in range(4):
        with pytest.raises(AuthFailed) as failed:
            await accounts.login("ada", "wrong password!!")
        assert not isinstance(failed.value, Locked)
        clock.advance(minutes=2)
    with pytest.raises(AuthFailed):
        await accounts.login("ada", "wrong password!!")
    assert (await accounts.user("ada")).status == "locked"
    clock.advance(minutes=29)
    with pytest.raises(Locked):
        await accounts.login("ada", PASSWORD)  # even the right password, while locked
    clock.advance(minutes=1, seconds=1)
    login = await accounts.login("ada", PASSWORD)
    assert login.user.username == "ada" and (await accounts.user("ada")).status == "active"
    actions = [r.action for r in await accounts.audit.recent(50)]
    assert "user.lockout" in actions and "user.unlock" in actions


async def test_failures_spread_beyond_the_window_never_lock(accounts: Accounts, clock: Clock) -> None:
    for _ in range(8):
        with pytest.raises(AuthFailed) as failed:
            await accounts.login("ada", "wrong password!!")
        assert not isinstance(failed.value, Locked)
        clock.advance(minutes=4)
    assert (await accounts.user("ada")).status == "active"


async def test_a_disabled_user_cannot_log_in_nor_use_its_keys(accounts: Accounts) -> None:
    _, key = await accounts.create_key("ada's laptop", "researcher", username="ada")
    assert (await accounts.key_principal(key)).subject == "user:ada"
    await accounts.set_status("ada", "disabled", actor="user:root")
    with pytest.raises(Disabled):
        await accounts.login("ada", PASSWORD)
    with pytest.raises(Disabled):
        await accounts.key_principal(key)


async def test_keys_are_stored_hashed_and_revocable(accounts: Accounts, store: EventStore) -> None:
    info, key = await accounts.create_key("ci", "viewer")
    assert (await accounts.key_principal(key)).role == "viewer"
    stored = await store.pool.fetchval("SELECT key_hash FROM api_keys WHERE key_id = $1", info.key_id)
    assert key not in stored and stored == policy.digest(key)
    with pytest.raises(AuthFailed):
        await accounts.key_principal(key[:-1] + ("A" if key[-1] != "A" else "B"))
    await accounts.revoke_key(info.key_id, actor="cli")
    with pytest.raises(Disabled):
        await accounts.key_principal(key)


async def test_the_audit_log_is_append_only_and_its_chain_finds_an_edit(accounts: Accounts, store: EventStore) -> None:
    await accounts.login("ada", PASSWORD)
    await accounts.create_key("ci", "viewer")
    verified = await accounts.verify_audit()
    assert verified.ok and verified.records >= 3
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await store.pool.execute("UPDATE audit_log SET outcome = 'ok'")
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await store.pool.execute("DELETE FROM audit_log")
    # A superuser can get past the trigger; the chain still tells.
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 2")
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    broken = await accounts.verify_audit()
    assert not broken.ok and broken.broken_at == 2


async def test_concurrent_reads_on_one_small_pool_do_not_deadlock(settings: Settings) -> None:
    """The projector holds a connection under its lock and takes a second: without one
    catch-up at a time per client, callers waiting for the lock would hold every connection."""
    async with AlphaSaga(settings, pool_size=2) as client:
        stores = await asyncio.gather(*(client.event_store() for _ in range(5)))
        assert all(s is stores[0] for s in stores)  # callers arriving together share one pool
        lists = await asyncio.wait_for(asyncio.gather(*(client.sagas() for _ in range(20))), 30)
    assert lists == [[]] * 20


async def test_concurrent_audit_records_are_all_committed_in_one_chain(accounts: Accounts) -> None:
    await asyncio.gather(*(accounts.record("user:test", "probe", str(i)) for i in range(50)))
    verified = await accounts.verify_audit()
    assert verified.ok and verified.records == 51  # the fixture's user.create, and these
    assert sorted(int(r.target) for r in await accounts.audit.recent(100, action="probe")) == list(range(50))


async def test_audit_details_are_stored_as_json_objects(accounts: Accounts, store: EventStore) -> None:
    await accounts.create_key("ci", "viewer")
    rows = await store.pool.fetch("SELECT jsonb_typeof(detail) AS kind, detail->>'role' AS role FROM audit_log")
    assert {r["kind"] for r in rows} == {"object"}
    assert "viewer" in {r["role"] for r in rows}  # queryable as a field, not a string to parse


async def test_the_migration_turns_old_string_details_into_objects_and_the_chain_verifies(
    accounts: Accounts, store: EventStore
) -> None:
    """Rows written before the fix held their detail as a JSON string inside jsonb; the
    migration rewrites them as the objects they spell, and every hash still verifies."""
    from importlib import resources

    await accounts.record("cli", "user.create", "bob", role="viewer")
    async with store.pool.acquire() as conn:  # as the old code stored it, past the trigger
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute("UPDATE audit_log SET detail = to_jsonb(detail::text)")
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    kinds = await store.pool.fetch("SELECT DISTINCT jsonb_typeof(detail) AS kind FROM audit_log")
    assert {r["kind"] for r in kinds} == {"string"}
    migration = resources.files("alphasaga_accounts").joinpath("migrations/0003_audit_detail_objects.sql")
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute(migration.read_text())
    kinds = await store.pool.fetch("SELECT DISTINCT jsonb_typeof(detail) AS kind FROM audit_log")
    assert {r["kind"] for r in kinds} == {"object"}
    assert (await accounts.verify_audit()).ok
    with pytest.raises(asyncpg.exceptions.RestrictViolationError):  # append-only again
        await store.pool.execute("UPDATE audit_log SET actor = 'x'")


async def test_anything_but_a_refresh_token_is_refused(accounts: Accounts) -> None:
    for presented in ("eyJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJ4In0.c2ln", "ask_0123456789ab_secret", "", "x" * 3000):
        with pytest.raises(AuthFailed, match="unknown refresh token"):
            await accounts.refresh(presented)
