"""``alphasaga acl``: the Redis users of least privilege, one per service (issue #30)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import CliError

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Redis ACL users, one per service.")


def read_passwords(directory: Path) -> dict[str, str]:
    """One file per user, named as the user without its prefix (``ml``, ``api``, ``admin``):
    how Kubernetes mounts a secret's keys. Users without a file are rendered off."""
    if not directory.is_dir():
        raise CliError(f"--passwords {directory}: not a directory")
    found = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            password = path.read_text().strip()
            if not password:
                raise CliError(f"--passwords: {path} is empty")
            found[path.name] = password
    return found


@app.command()
def render(
    namespace: Annotated[
        str | None, typer.Option(help="Stream namespace (default: ALPHASAGA_NAMESPACE, else alphasaga)")
    ] = None,
    passwords: Annotated[
        Path | None, typer.Option(help="Directory with one password file per user; without it every user is off")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Prefix of the user names")] = "alphasaga-",
) -> None:
    """Print the ACL file (Redis's aclfile format): each service may touch only its
    streams and keys, and only admin may run FLUSHDB, CONFIG, KEYS or DEBUG."""
    from alphasaga_shared.acl import render as render_acl

    from ..session import settings

    ns = namespace or settings().namespace
    try:
        text = render_acl(ns, read_passwords(passwords) if passwords else None, prefix=prefix)
    except ValueError as exc:  # a namespace the stream contract refuses
        raise CliError(str(exc)) from None
    typer.echo(text, nl=False)
