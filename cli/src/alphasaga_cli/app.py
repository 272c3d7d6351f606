"""The ``alphasaga`` command line: the app, its commands, and the one place errors are
turned into a line on stderr and an exit code.

Commands parse their arguments, call the client API (``alphasaga_client``) and print.
They import what they use inside their bodies, so that ``--help`` and a mistyped option
answer at once, without loading the message models or the database drivers."""

from __future__ import annotations

import os
import sys

import typer
import typer.core

from .commands import accounts, acl, archive, campaigns, dlq, history, projections, research, runs, stack, streams
from .errors import FAILED, NOT_COMPLETED, CliError, one_line
from .imports import keep_lean

# Help is formatted by click (rich_markup_mode=None below), yet typer loads rich whenever
# it is installed, to escape option defaults for an HTML export: a fifth of a second on
# every --help. The tables and the live view load rich themselves, when they are shown.
typer.core.HAS_RICH = False

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="AlphaSaga: automated trading-strategy research. Every command has --help with an example.",
)

app.command()(stack.run)
app.command()(stack.up)
app.command()(research.submit)
app.command()(research.watch)
app.command()(research.status)
app.command("list")(research.list_sagas)
app.command()(history.replay)
app.command()(history.events)
app.command()(streams.publish)
app.command()(streams.tail)
app.command()(streams.types)
app.command()(research.cancel)
app.command()(research.artifacts)
app.command()(runs.fork)
app.command()(runs.diff)
app.add_typer(campaigns.app, name="campaign")
app.add_typer(dlq.app, name="dlq")
app.add_typer(acl.app, name="acl")
app.command()(acl.migrate)
app.add_typer(projections.app, name="projections")
app.add_typer(archive.app, name="archive")
app.add_typer(accounts.users, name="users")
app.add_typer(accounts.keys, name="keys")
app.add_typer(accounts.audit, name="audit")
app.command()(accounts.mcp)


def _fail(message: str, code: int = FAILED) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(code)


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """Exception classes of a module, if it was imported: an exception of a module that was
    never loaded cannot have been raised, so nothing is imported just to check."""
    found = sys.modules.get(module)
    return tuple(getattr(found, n) for n in names) if found is not None else ()


def failure(exc: BaseException) -> tuple[str, int] | None:
    """The line and exit code for an exception a user can act on; None for a bug."""
    from alphasaga_shared.errors import ClientError

    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, ClientError):
        return str(exc), FAILED
    if isinstance(exc, _loaded("alphasaga_shared.config", "ConfigError")):
        return str(exc), FAILED
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out", NOT_COMPLETED
    if isinstance(exc, _loaded("redis.exceptions", "ConnectionError", "TimeoutError")):
        return f"lost the connection to Redis: {exc}", FAILED
    if isinstance(exc, _loaded("redis.exceptions", "RedisError")):
        return f"Redis refused: {exc}", FAILED
    if isinstance(exc, _loaded("asyncpg", "PostgresError", "InterfaceError")):
        return f"PostgreSQL: {exc}", FAILED
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}", FAILED
    return None


def main() -> None:
    """Run the app; whatever goes wrong is one line, never a traceback (unless
    ALPHASAGA_DEBUG is set, for whoever is fixing the CLI itself)."""
    keep_lean()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        known = failure(exc)
        if known is not None:
            _fail(*known)
        if os.environ.get("ALPHASAGA_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (ALPHASAGA_DEBUG=1 shows the traceback)")


if __name__ == "__main__":
    main()
