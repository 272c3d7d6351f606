"""What admins do: dead letters (read, redrive, purge), users and API keys. Each change is
recorded in the audit log as the caller's."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .caller import Caller

if TYPE_CHECKING:
    from alphasaga_accounts import ApiKey, User

    from ..deadletters import DeadLetter


async def dead_letters(c: Caller, stream: str | None = None) -> list[DeadLetter]:
    c.require("admin")
    return await c.client.dead_letters(stream)


async def dead_letter(c: Caller, entry_id: str, stream: str | None = None) -> DeadLetter:
    c.require("admin")
    return await c.client.dead_letter(entry_id, stream)


async def redrive(c: Caller, entry_id: str, stream: str | None = None) -> tuple[DeadLetter, str]:
    """Send the dead letter back to its source stream, unchanged; it and its new entry id."""
    letter = await dead_letter(c, entry_id, stream)
    return letter, await c.client.redrive(letter)


async def purge(c: Caller, entry_id: str, stream: str | None = None) -> None:
    await c.client.purge([await dead_letter(c, entry_id, stream)])


async def users(c: Caller) -> list[User]:
    c.require("admin")
    return await c.accounts.users()


async def create_user(c: Caller, username: str, password: str, role: str) -> User:
    c.require("admin")
    return await c.accounts.create_user(username, password, role, actor=c.subject)


async def set_user_status(c: Caller, username: str, status: str) -> User:
    """Disable a user (its sessions and keys stop working at once), or make it active again
    (which also lifts a lockout)."""
    c.require("admin")
    return await c.accounts.set_status(username, status, actor=c.subject)


async def keys(c: Caller) -> list[ApiKey]:
    c.require("admin")
    return await c.accounts.keys()


async def create_key(c: Caller, name: str, role: str, username: str | None = None) -> tuple[ApiKey, str]:
    """A new API key and its one-time plaintext."""
    c.require("admin")
    return await c.accounts.create_key(name, role, username=username, actor=c.subject)


async def revoke_key(c: Caller, key_id: uuid.UUID) -> None:
    c.require("admin")
    await c.accounts.revoke_key(key_id, actor=c.subject)
