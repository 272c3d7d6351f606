"""``alphasaga users``, ``keys`` and ``audit verify`` as an operator runs them, against real
PostgreSQL: the first admin, a key shown once, and an edited audit record found."""

from __future__ import annotations

from alphasaga_shared.eventstore import EventStore
from cli.tests.clirunner import alphasaga, assert_one_line_error


async def test_first_admin_keys_and_audit_verify(env: dict[str, str], store: EventStore) -> None:
    made = alphasaga(env, "users", "create", "root", "--role", "admin", "--password-stdin",
                     stdin="correct horse battery\n")  # fmt: skip
    assert made.code == 0 and "user root created (admin)" in made.out, made
    short = alphasaga(env, "users", "create", "eve", "--password-stdin", stdin="short\n")
    assert_one_line_error(short, contains="at least 12 characters")
    users = alphasaga(env, "users", "list", "--json").json()
    assert [(u["username"], u["role"], u["status"]) for u in users] == [("root", "admin", "active")]

    key = alphasaga(env, "keys", "create", "--name", "ci", "--role", "viewer")
    assert key.code == 0 and key.out.startswith("ask_") and len(key.out.splitlines()) == 1, key
    listed = alphasaga(env, "keys", "list", "--json").json()
    assert [k["name"] for k in listed] == ["ci"] and key.out.strip() not in str(listed)
    assert alphasaga(env, "keys", "revoke", listed[0]["key_id"]).code == 0
    assert alphasaga(env, "keys", "list", "--json").json()[0]["status"] == "revoked"

    intact = alphasaga(env, "audit", "verify")
    assert intact.code == 0 and "audit log intact: 3 records" in intact.out, intact
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        await conn.execute('UPDATE audit_log SET detail = \'{"role": "viewer"}\' WHERE seq = 1')
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    broken = alphasaga(env, "audit", "verify")
    assert broken.code == 1 and "BROKEN at record 1" in broken.err, broken
