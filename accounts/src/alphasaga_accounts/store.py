"""Every SQL statement over the accounts' tables: ``users``, ``sessions``,
``refresh_tokens``, ``api_keys`` and ``saga_owners`` (migrations in ``migrations/``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg

from alphasaga_shared.eventstore import Conn
from alphasaga_shared.eventstore.migrations import migrate

LEDGER = "accounts_migrations"


async def migrate_accounts(pool: asyncpg.Pool, schema: str) -> list[str]:
    async with pool.acquire() as conn:
        return await migrate(conn, schema, package=__package__, ledger=LEDGER)


class AccountStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- users ---

    async def insert_user(
        self, user_id: uuid.UUID, username: str, password_hash: str, role: str, now: dt.datetime
    ) -> bool:
        """False when the username is taken."""
        status: str = await self.pool.execute(
            "INSERT INTO users (user_id, username, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (username) DO NOTHING",
            user_id,
            username,
            password_hash,
            role,
            now,
        )
        return status.endswith(" 1")

    async def user_by_name(self, username: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow("SELECT * FROM users WHERE username = $1", username)
        return row

    async def user_by_id(self, user_id: uuid.UUID) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
        return row

    async def users(self) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch("SELECT * FROM users ORDER BY created_at, username")
        return rows

    async def set_failures(
        self, user_id: uuid.UUID, failures: list[dt.datetime], locked_until: dt.datetime | None
    ) -> None:
        await self.pool.execute(
            "UPDATE users SET recent_failures = $2, locked_until = $3,"
            " status = CASE WHEN $3::timestamptz IS NOT NULL THEN 'locked' ELSE status END"
            " WHERE user_id = $1",
            user_id,
            failures,
            locked_until,
        )

    async def set_status(self, user_id: uuid.UUID, status: str) -> None:
        """Also clears the lockout state: unlocking starts the window afresh."""
        await self.pool.execute(
            "UPDATE users SET status = $2, recent_failures = '{}', locked_until = NULL WHERE user_id = $1",
            user_id,
            status,
        )

    async def clear_failures(self, user_id: uuid.UUID) -> None:
        await self.pool.execute(
            "UPDATE users SET recent_failures = '{}' WHERE user_id = $1 AND recent_failures <> '{}'", user_id
        )

    # --- sessions and refresh tokens ---

    async def open_session(
        self,
        session_id: uuid.UUID,
        user_id: uuid.UUID,
        token_hash: str,
        now: dt.datetime,
        expires_at: dt.datetime,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO sessions (session_id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                session_id,
                user_id,
                now,
                expires_at,
            )
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
                token_hash,
                session_id,
                now,
            )

    async def rotate(self, token_hash: str, new_hash: str, now: dt.datetime) -> tuple[str, asyncpg.Record | None]:
        """Use a refresh token once: ("rotated", session) with the new token stored, ("reused",
        session) when it was used before, ("unknown", None) when there is no such token."""
        async with self.pool.acquire() as conn, conn.transaction():
            token = await conn.fetchrow(
                "SELECT t.used_at, s.* FROM refresh_tokens t JOIN sessions s USING (session_id)"
                " WHERE t.token_hash = $1 FOR UPDATE OF t",
                token_hash,
            )
            if token is None:
                return "unknown", None
            if token["used_at"] is not None:
                return "reused", token
            await conn.execute("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1", token_hash, now)
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
                new_hash,
                token["session_id"],
                now,
            )
            return "rotated", token

    async def revoke_session(self, session_id: uuid.UUID, reason: str, now: dt.datetime) -> bool:
        status: str = await self.pool.execute(
            "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE session_id = $1 AND revoked_at IS NULL",
            session_id,
            now,
            reason,
        )
        return status.endswith(" 1")

    async def session(self, session_id: uuid.UUID) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow(
            "SELECT s.*, u.username, u.role, u.status FROM sessions s JOIN users u USING (user_id)"
            " WHERE s.session_id = $1",
            session_id,
        )
        return row

    # --- API keys ---

    async def insert_key(
        self,
        key_id: uuid.UUID,
        prefix: str,
        key_hash: str,
        name: str,
        role: str,
        user_id: uuid.UUID | None,
        now: dt.datetime,
    ) -> None:
        await self.pool.execute(
            "INSERT INTO api_keys (key_id, prefix, key_hash, name, role, user_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            key_id,
            prefix,
            key_hash,
            name,
            role,
            user_id,
            now,
        )

    async def key_by_prefix(self, prefix: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await self.pool.fetchrow(
            "SELECT k.*, u.status AS user_status, u.username"
            " FROM api_keys k LEFT JOIN users u USING (user_id) WHERE k.prefix = $1",
            prefix,
        )
        return row

    async def keys(self) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch("SELECT * FROM api_keys ORDER BY created_at, name")
        return rows

    async def revoke_key(self, key_id: uuid.UUID, now: dt.datetime) -> bool:
        status: str = await self.pool.execute(
            "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL", key_id, now
        )
        return status.endswith(" 1")

    # --- saga owners ---

    async def set_owner(self, saga_id: uuid.UUID, subject: str, now: dt.datetime, conn: Conn | None = None) -> bool:
        """The first submitter stays the owner (a retried submit names the same saga);
        returns whether this call recorded it. On ``conn``, it commits with what else the
        caller writes there (the submit itself)."""
        status: str = await (conn or self.pool).execute(
            "INSERT INTO saga_owners (saga_id, subject, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            saga_id,
            subject,
            now,
        )
        return status.endswith(" 1")

    async def owner(self, saga_id: uuid.UUID) -> str | None:
        value: Any = await self.pool.fetchval("SELECT subject FROM saga_owners WHERE saga_id = $1", saga_id)
        return str(value) if value is not None else None
