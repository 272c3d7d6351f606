"""``Accounts``: users, logins with rotated refresh tokens, API keys and the audit log, as
one unit that the HTTP API, the MCP server and the CLI share. Time comes from an injected
clock, so that the lockout window is tested without waiting for it."""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from alphasaga_shared.errors import ClientError, InvalidRequest, NotFound
from alphasaga_shared.eventstore import Conn

from . import policy
from .audit import AuditLog, AuditRecord, GroupCommit, Verification
from .policy import ROLES, Role
from .store import AccountStore, migrate_accounts

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuthFailed(ClientError):
    """Wrong credentials, or none that are still valid. Says no more than that."""


class Locked(AuthFailed):
    def __init__(self, until: dt.datetime, now: dt.datetime) -> None:
        super().__init__("the account is locked after too many failed logins")
        self.until = until
        self.retry_after_s = max(1, int((until - now).total_seconds()) + 1)


class Disabled(AuthFailed):
    """A disabled account or a revoked key."""


class SessionRevoked(AuthFailed):
    """A refresh token presented a second time: the whole session is revoked."""


class WeakPassword(InvalidRequest):
    pass


@dataclass(frozen=True, slots=True)
class User:
    user_id: uuid.UUID
    username: str
    role: str
    status: str
    created_at: dt.datetime
    locked_until: dt.datetime | None = None

    @classmethod
    def of(cls, row: asyncpg.Record) -> User:
        return cls(row["user_id"], row["username"], row["role"], row["status"], row["created_at"], row["locked_until"])


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: uuid.UUID
    prefix: str
    name: str
    role: str
    user_id: uuid.UUID | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @classmethod
    def of(cls, row: asyncpg.Record) -> ApiKey:
        return cls(
            row["key_id"], row["prefix"], row["name"], row["role"], row["user_id"], row["created_at"], row["revoked_at"]
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user's session or an API key, with the role it acts with.
    ``subject`` names it in the audit log and as a saga's owner."""

    subject: str
    role: str
    session_id: uuid.UUID | None = None

    def may(self, needed: Role) -> bool:
        return policy.allows(self.role, needed)


@dataclass(frozen=True, slots=True)
class Login:
    user: User
    session_id: uuid.UUID
    refresh_token: str
    expires_at: dt.datetime


@dataclass
class Accounts:
    pool: asyncpg.Pool
    clock: Clock = utc_now
    refresh_ttl: dt.timedelta = dt.timedelta(days=14)
    store: AccountStore = field(init=False)
    audit: AuditLog = field(init=False)
    _appends: GroupCommit = field(init=False)

    def __post_init__(self) -> None:
        self.store = AccountStore(self.pool)
        self.audit = AuditLog(self.pool)
        self._appends = GroupCommit(self.audit)

    @classmethod
    async def open(cls, pool: asyncpg.Pool, schema: str, **kwargs: Any) -> Accounts:
        await migrate_accounts(pool, schema)
        return cls(pool, **kwargs)

    async def record(
        self, actor: str, action: str, target: str = "", outcome: str = "ok", **detail: str | int | None
    ) -> None:
        await self._appends.append(AuditRecord(self.clock(), actor, action, target, outcome, dict(detail)))

    async def verify_audit(self) -> Verification:
        return await self.audit.verify()

    # --- users ---

    async def create_user(self, username: str, password: str, role: str, *, actor: str = "cli") -> User:
        if role not in ROLES:
            raise InvalidRequest(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if not (1 <= len(username) <= 64) or not username.isprintable() or username.strip() != username:
            raise InvalidRequest("a username has 1 to 64 printable characters, without spaces around")
        if (problem := policy.password_problem(password)) is not None:
            raise WeakPassword(problem)
        user_id, now = uuid.uuid4(), self.clock()
        if not await self.store.insert_user(
            user_id, username, await asyncio.to_thread(_hasher().hash, password), role, now
        ):
            raise InvalidRequest(f"user {username!r} exists already")
        await self.record(actor, "user.create", username, role=role)
        return User(user_id, username, role, "active", now)

    async def users(self) -> list[User]:
        return [User.of(r) for r in await self.store.users()]

    async def user(self, username: str) -> User:
        row = await self.store.user_by_name(username)
        if row is None:
            raise NotFound(f"no user {username!r}")
        return User.of(row)

    async def set_status(self, username: str, status: str, *, actor: str) -> User:
        if status not in ("active", "disabled"):
            raise InvalidRequest("a user's status can be set to active or disabled")
        user = await self.user(username)
        await self.store.set_status(user.user_id, status)
        await self.record(actor, "user.status", username, status=status)
        return await self.user(username)

    # --- logins ---

    async def login(self, username: str, password: str, *, source: str = "") -> Login:
        now = self.clock()
        row = await self.store.user_by_name(username)
        if row is None:
            await asyncio.to_thread(
                _hasher_verify_dummy, password
            )  # the same work as for a real user: no timing oracle
            await self.record(f"user:{username}", "login", username, "failed", source=source)
            raise AuthFailed("wrong username or password")
        user = User.of(row)
        if user.status == "disabled":
            await self.record(f"user:{username}", "login", username, "disabled", source=source)
            raise Disabled("wrong username or password")
        if policy.still_locked(row["locked_until"], now):
            await self.record(f"user:{username}", "login", username, "locked", source=source)
            raise Locked(row["locked_until"], now)
        if user.status == "locked":  # the lock has run out
            await self.store.set_status(user.user_id, "active")
            await self.record("system", "user.unlock", username, "expired")
        if not await asyncio.to_thread(_verify, row["password_hash"], password):
            await self._failed(user, list(row["recent_failures"]) if user.status != "locked" else [], now, source)
            raise AuthFailed("wrong username or password")
        if row["recent_failures"]:
            await self.store.clear_failures(user.user_id)
        token, session_id = policy.new_refresh_token(), uuid.uuid4()
        expires = now + self.refresh_ttl
        await self.store.open_session(session_id, user.user_id, policy.digest(token), now, expires)
        await self.record(f"user:{username}", "login", username, "ok", source=source, session=str(session_id))
        return Login(user, session_id, token, expires)

    async def _failed(self, user: User, recent: list[dt.datetime], now: dt.datetime, source: str) -> None:
        outcome = policy.after_failure(recent, now)
        await self.store.set_failures(user.user_id, outcome.recent_failures, outcome.locked_until)
        await self.record(f"user:{user.username}", "login", user.username, "failed", source=source)
        if outcome.locked_until is not None:
            await self.record("system", "user.lockout", user.username, until=outcome.locked_until.isoformat())

    async def refresh(self, token: str) -> Login:
        """Rotate a refresh token; a used one revokes its whole session."""
        if not policy.is_refresh_token(token):  # an access token, a key, anything else
            raise AuthFailed("unknown refresh token")
        now, new_token = self.clock(), policy.new_refresh_token()
        kind, row = await self.store.rotate(policy.digest(token), policy.digest(new_token), now)
        if kind == "unknown" or row is None:
            raise AuthFailed("unknown refresh token")
        session_id: uuid.UUID = row["session_id"]
        if kind == "reused":
            await self.store.revoke_session(session_id, "refresh token reused", now)
            await self.record("system", "session.revoke", str(session_id), "refresh token reused")
            raise SessionRevoked("this refresh token was used before: the session is revoked, log in again")
        session = await self.store.session(session_id)
        if session is None or session["revoked_at"] is not None or session["expires_at"] <= now:
            raise AuthFailed("the session has ended: log in again")
        if session["status"] != "active":
            raise Disabled("the account is not active")
        user_row = await self.store.user_by_id(session["user_id"])
        assert user_row is not None
        await self.record(f"user:{session['username']}", "session.refresh", str(session_id))
        return Login(User.of(user_row), session_id, new_token, session["expires_at"])

    async def logout(self, session_id: uuid.UUID, *, actor: str) -> None:
        await self.store.revoke_session(session_id, "logout", self.clock())
        await self.record(actor, "logout", str(session_id))

    async def session_principal(self, session_id: uuid.UUID) -> Principal:
        """The user behind an access token's session, refused once the session or the
        account has ended: logout and disabling act at once, not when the token expires."""
        row = await self.store.session(session_id)
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= self.clock():
            raise AuthFailed("the session has ended: log in again")
        if row["status"] != "active":
            raise Disabled("the account is not active")
        return Principal(f"user:{row['username']}", row["role"], session_id)

    # --- API keys ---

    async def create_key(
        self, name: str, role: str, *, username: str | None = None, actor: str = "cli"
    ) -> tuple[ApiKey, str]:
        """A new key and its one-time plaintext."""
        if role not in ROLES:
            raise InvalidRequest(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if not (1 <= len(name) <= 100) or not name.isprintable():
            raise InvalidRequest("a key's name has 1 to 100 printable characters")
        user_id = (await self.user(username)).user_id if username else None
        prefix, plaintext = policy.new_api_key()
        key = ApiKey(uuid.uuid4(), prefix, name, role, user_id, self.clock())
        await self.store.insert_key(key.key_id, prefix, policy.digest(plaintext), name, role, user_id, key.created_at)
        await self.record(actor, "key.create", str(key.key_id), name=name, role=role, user=username)
        return key, plaintext

    async def keys(self) -> list[ApiKey]:
        return [ApiKey.of(r) for r in await self.store.keys()]

    async def revoke_key(self, key_id: uuid.UUID, *, actor: str) -> None:
        if not await self.store.revoke_key(key_id, self.clock()):
            raise NotFound(f"no active key {key_id}")
        await self.record(actor, "key.revoke", str(key_id))

    async def key_principal(self, presented: str) -> Principal:
        prefix = policy.key_prefix(presented)
        row = await self.store.key_by_prefix(prefix) if prefix else None
        if row is None or not hmac.compare_digest(row["key_hash"], policy.digest(presented)):
            raise AuthFailed("unknown API key")
        if row["revoked_at"] is not None or (row["user_status"] not in (None, "active")):
            raise Disabled("this API key is revoked")
        # A user's key acts as that user: its sagas are the user's own.
        subject = f"user:{row['username']}" if row["username"] else f"key:{row['key_id']}"
        return Principal(subject, row["role"])

    # --- saga owners ---

    async def own(self, saga_id: uuid.UUID, principal: Principal, conn: Conn | None = None) -> bool:
        """Record ``principal`` as the saga's owner unless it has one; returns whether it
        was recorded now. On ``conn``, in the transaction of the submit it belongs to."""
        return await self.store.set_owner(saga_id, principal.subject, self.clock(), conn)

    async def owner(self, saga_id: uuid.UUID) -> str | None:
        return await self.store.owner(saga_id)


def _hasher() -> Any:
    from argon2 import PasswordHasher  # Argon2id with the library's RFC 9106 defaults

    return PasswordHasher()


_DUMMY_HASH: list[str] = []


def _verify(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def _hasher_verify_dummy(password: str) -> None:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(_hasher().hash("not a real password, for timing"))
    _verify(_DUMMY_HASH[0], password)
