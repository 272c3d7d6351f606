"""The ``alphasaga`` command line: the app, its commands, and the one place errors are
turned into a line on stderr and an exit code.

Commands parse their arguments, call the client API (``alphasaga_client``) and print.
They import what they use inside their bodies, so that ``--help`` and a mistyped option
answer at once, without loading the message models or the database drivers."""

from __future__ import annotations

import importlib
import os
import sys

import typer
import typer.core

from .errors import FAILED, NOT_COMPLETED, CliError, one_line
from .imports import keep_lean

# Help is formatted by click (rich_markup_mode=None below), yet typer loads rich whenever
# it is installed, to escape option defaults for an HTML export: a fifth of a second on
# every --help. The tables and the live view load rich themselves, when they are shown.
typer.core.HAS_RICH = False

HELP = "AlphaSaga: automated trading-strategy research. Every command has --help with an example."

# Each command (registered in this order): the module of ``.commands`` that holds it
# and its name there (a typer app is a group of commands). A call builds only the command
# it names: typer builds every parameter of every command it is given, 26 ms of a
# status's 0.3 s for the forty of them (docs/decisions/0027).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("stack", "run"),
    "up": ("stack", "up"),
    "submit": ("research", "submit"),
    "watch": ("research", "watch"),
    "status": ("research", "status"),
    "list": ("research", "list_sagas"),
    "replay": ("history", "replay"),
    "events": ("history", "events"),
    "publish": ("streams", "publish"),
    "tail": ("streams", "tail"),
    "types": ("streams", "types"),
    "cancel": ("research", "cancel"),
    "artifacts": ("research", "artifacts"),
    "fork": ("runs", "fork"),
    "diff": ("runs", "diff"),
    "campaign": ("campaigns", "app"),
    "dlq": ("dlq", "app"),
    "acl": ("acl", "app"),
    "migrate": ("acl", "migrate"),
    "projections": ("projections", "app"),
    "archive": ("archive", "app"),
    "users": ("accounts", "users"),
    "keys": ("accounts", "keys"),
    "audit": ("accounts", "audit"),
    "mcp": ("accounts", "mcp"),
}


def build(only: str | None = None) -> typer.Typer:
    """The app with every command, or with ``only`` that one (a name of ``COMMANDS``)."""
    app = typer.Typer(
        add_completion=False,
        no_args_is_help=True,
        # click suggests a command for a mistyped one already; typer's own would say it twice.
        suggest_commands=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        help=HELP,
    )
    for name, (module, attribute) in COMMANDS.items():
        if only is not None and name != only:
            continue
        found = getattr(importlib.import_module(f".commands.{module}", __package__), attribute)
        if isinstance(found, typer.Typer):
            app.add_typer(found, name=name)
        else:
            app.command(name)(found)
    if only is not None:
        # A typer app of one command would run it as the app itself, without its name.
        app.callback()(_group)
    return app


def _group() -> None:
    """Nothing of its own: it only makes an app of one command a group."""


def _named_command(argv: list[str]) -> str | None:
    """The command the arguments name, if any: the help, a mistake or nothing at all get
    the whole app (its list of commands, its "did you mean")."""
    return argv[1] if len(argv) > 1 and argv[1] in COMMANDS else None


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
        build(_named_command(sys.argv))()
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
