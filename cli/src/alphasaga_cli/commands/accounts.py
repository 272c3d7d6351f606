"""``alphasaga users``, ``keys`` and ``audit``: the API's accounts, straight over the
database (for the first admin, and for an operator when the API is down)."""

from __future__ import annotations

import os
import sys
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import CliError
from ..output import echo, print_json, table
from ..session import with_client

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga

users = typer.Typer(no_args_is_help=True, suggest_commands=False, rich_markup_mode=None, help="Users of the HTTP API.")
keys = typer.Typer(
    no_args_is_help=True, suggest_commands=False, rich_markup_mode=None, help="API keys for machines and agents."
)
audit = typer.Typer(
    no_args_is_help=True, suggest_commands=False, rich_markup_mode=None, help="The audit log of the HTTP API."
)

RoleOpt = Annotated[str, typer.Option("--role", help="viewer, researcher or admin")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
ACTOR = "cli"


def _password(from_stdin: bool) -> str:
    """From stdin (scripts), ALPHASAGA_PASSWORD, or asked twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("ALPHASAGA_PASSWORD"):
        return os.environ["ALPHASAGA_PASSWORD"]
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CliError("the passwords differ")
    return first


@users.command("create")
def create_user(
    username: Annotated[str, typer.Argument(help="The login name")],
    role: RoleOpt = "viewer",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
) -> None:
    """Create a user (the first admin, too: no API needed).

    Example: alphasaga users create alice --role admin
    """
    password = _password(password_stdin)

    async def go(client: AlphaSaga) -> None:
        user = await (await client.accounts()).create_user(username, password, role, actor=ACTOR)
        echo(f"user {user.username} created ({user.role})")

    with_client(go)


@users.command("list")
def list_users(as_json: JsonFlag = False) -> None:
    """Users with their role and status."""

    async def go(client: AlphaSaga) -> None:
        found = await (await client.accounts()).users()
        rows = [[u.username, u.role, u.status, u.created_at.isoformat(timespec="seconds")] for u in found]
        if as_json:
            print_json([dict(zip(("username", "role", "status", "created_at"), r, strict=True)) for r in rows])
        else:
            table(["username", "role", "status", "created"], rows)

    with_client(go)


@users.command("set-status")
def set_status(
    username: str, status: Annotated[str, typer.Argument(help="active (also lifts a lockout) or disabled")]
) -> None:
    """Disable a user, or make it active again."""

    async def go(client: AlphaSaga) -> None:
        user = await (await client.accounts()).set_status(username, status, actor=ACTOR)
        echo(f"user {user.username} is {user.status}")

    with_client(go)


@keys.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="What the key is for")] = "cli key",
    role: RoleOpt = "researcher",
    user: Annotated[str | None, typer.Option("--user", help="The user the key acts as")] = None,
) -> None:
    """Create an API key and print it once: only its hash is kept.

    Example: alphasaga keys create --name ci --role viewer
    """

    async def go(client: AlphaSaga) -> None:
        info, key = await (await client.accounts()).create_key(name, role, username=user, actor=ACTOR)
        echo(key)
        echo(f"key {info.key_id} ({info.role}): shown once, keep it now", err=True)

    with_client(go)


@keys.command("list")
def list_keys(as_json: JsonFlag = False) -> None:
    """Keys with their prefix, role and whether they are revoked (never the key)."""

    async def go(client: AlphaSaga) -> None:
        found = await (await client.accounts()).keys()
        rows = [[str(k.key_id), k.prefix, k.name, k.role, "revoked" if k.revoked_at else "active"] for k in found]
        if as_json:
            print_json([dict(zip(("key_id", "prefix", "name", "role", "status"), r, strict=True)) for r in rows])
        else:
            table(["key id", "prefix", "name", "role", "status"], rows)

    with_client(go)


@keys.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id (alphasaga keys list)")]) -> None:
    """Revoke a key: it stops working at once, on every replica."""
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise CliError(f"{key_id!r} is not a key id") from None

    async def go(client: AlphaSaga) -> None:
        await (await client.accounts()).revoke_key(parsed, actor=ACTOR)
        echo(f"key {parsed} revoked")

    with_client(go)


@audit.command("verify")
def verify() -> None:
    """Recompute the audit log's hash chain: exit 1 naming the first record that was edited
    or removed.

    Example: alphasaga audit verify
    """

    async def go(client: AlphaSaga) -> int:
        result = await (await client.accounts()).verify_audit()
        if result.ok:
            echo(f"audit log intact: {result.records} records")
            return 0
        echo(f"audit log BROKEN at record {result.broken_at}: {result.reason}", err=True)
        return 1

    raise typer.Exit(with_client(go))


@audit.command("tail")
def tail(limit: Annotated[int, typer.Option(help="How many records")] = 20, as_json: JsonFlag = False) -> None:
    """The newest audit records."""

    async def go(client: AlphaSaga) -> None:
        records = await (await client.accounts()).audit.recent(limit)
        if as_json:
            for r in records:
                print_json(r.as_json())
            return
        table(
            ["seq", "at", "actor", "action", "target", "outcome"],
            [[str(r.seq), r.at.isoformat(timespec="seconds"), r.actor, r.action, r.target, r.outcome] for r in records],
        )

    with_client(go)


def mcp() -> None:
    """Serve the MCP tools over stdio for a local agent, with this environment's settings.

    Example (an agent's config): {"command": "alphasaga", "args": ["mcp"]}
    """
    from alphasaga_api.mcp_server import serve_stdio

    serve_stdio()
