"""``alphasaga acl``: the Redis users and PostgreSQL roles of least privilege, one per service
(issue #30)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import CliError

app = typer.Typer(
    no_args_is_help=True,
    suggest_commands=False,
    rich_markup_mode=None,
    help="Redis users and PostgreSQL roles, one per service.",
)


def read_passwords(directory: Path, option: str = "--passwords") -> dict[str, str]:
    """One file per user, named as the user without its prefix (``ml``, ``api``, ``admin``):
    how Kubernetes mounts a secret's keys. Users without a file are rendered off."""
    from alphasaga_shared.mounted import read_secret_files

    try:
        return read_secret_files(directory)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from None


@app.command()
def render(
    namespace: Annotated[
        str | None, typer.Option(help="Stream namespace (default: ALPHASAGA_NAMESPACE, else alphasaga)")
    ] = None,
    passwords: Annotated[
        Path | None, typer.Option(help="Directory with one password file per user; without it every user is off")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Prefix of the user names")] = "alphasaga-",
    anonymous_ping: Annotated[
        bool, typer.Option(help="The default user may PING (a health check without a password) and nothing else")
    ] = False,
) -> None:
    """Print the ACL file (Redis's aclfile format): each service may touch only its
    streams and keys, and only admin may run FLUSHDB, CONFIG, KEYS or DEBUG."""
    from alphasaga_shared.acl import render as render_acl

    from ..session import settings

    ns = namespace or settings().namespace
    try:
        text = render_acl(
            ns, read_passwords(passwords) if passwords else None, prefix=prefix, anonymous_ping=anonymous_ping
        )
    except ValueError as exc:  # a namespace the stream contract refuses
        raise CliError(str(exc)) from None
    typer.echo(text, nl=False)


@app.command()
def roles(
    schema: Annotated[
        str | None, typer.Option(help="Database schema (default: ALPHASAGA_DATABASE_SCHEMA, else alphasaga)")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Prefix of the role names")] = "alphasaga_",
) -> None:
    """Print the SQL that creates one PostgreSQL role per service (NOLOGIN) with the
    grants its work needs on the schema's tables, and the row policy that lets the front
    ends add only starts to the outbox. Run it as the tables' owner after the migrations."""
    from alphasaga_accounts.roles import GRANTS as ACCOUNTS
    from alphasaga_shared.eventstore.roles import GRANTS as EVENT_STORE
    from alphasaga_shared.eventstore.roles import render as render_roles

    from ..session import settings

    typer.echo(render_roles(schema or settings().database_schema, prefix, (EVENT_STORE, ACCOUNTS)), nl=False)


def migrate(
    schema: Annotated[
        str | None, typer.Option(help="Database schema (default: ALPHASAGA_DATABASE_SCHEMA, else alphasaga)")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Prefix of the role names")] = "alphasaga_",
    logins: Annotated[
        Path | None,
        typer.Option(help="Directory with one password file per role (orchestrator, ml, api…): those roles may log in"),
    ] = None,
) -> None:
    """The owner step: apply every migration, create the services' roles with their grants
    and give the roles in --logins a login, as ALPHASAGA_DATABASE_URL's user (the tables'
    owner). The services then log in as their roles and only check that the schema is
    current. Running it again changes nothing but the passwords.

    Example: ALPHASAGA_DATABASE_URL=postgresql://owner@db/alphasaga alphasaga migrate --logins /run/secrets/pg
    """
    import asyncio

    from ..principals import migrate_as_owner
    from ..session import settings

    config = settings()
    if not config.database_url:
        raise CliError("ALPHASAGA_DATABASE_URL is not set: the owner's URL, whose user may create the tables")
    try:
        applied = asyncio.run(
            migrate_as_owner(
                config.database_url,
                schema or config.database_schema,
                prefix,
                read_passwords(logins, "--logins") if logins else None,
            )
        )
    except ValueError as exc:  # a password file for no such role
        raise CliError(str(exc)) from None
    typer.echo(f"migrations applied: {', '.join(applied) or 'none (already current)'}; roles {prefix}* granted")
