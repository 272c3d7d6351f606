"""The ``alphasaga`` command line: the app, its commands, and the one place errors are
turned into a line on stderr and an exit code."""

from __future__ import annotations

import os
import sys

import asyncpg
import typer
from redis import exceptions as redis_errors

from alphasaga_shared.config import ConfigError

from .commands import dlq, history, projections, research, stack, streams
from .errors import FAILED, CliError, one_line

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
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
app.add_typer(dlq.app, name="dlq")
app.add_typer(projections.app, name="projections")


def _fail(message: str, code: int = FAILED) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Run the app; whatever goes wrong is one line, never a traceback (unless
    ALPHASAGA_DEBUG is set, for whoever is fixing the CLI itself)."""
    try:
        app()
    except CliError as exc:
        _fail(str(exc), exc.code)
    except ConfigError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        _fail(f"lost the connection to Redis: {exc}")
    except redis_errors.RedisError as exc:
        _fail(f"Redis refused: {exc}")
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _fail(f"PostgreSQL: {exc}")
    except OSError as exc:
        _fail(f"{exc.strerror or exc}")
    except Exception as exc:
        if os.environ.get("ALPHASAGA_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (ALPHASAGA_DEBUG=1 shows the traceback)")


if __name__ == "__main__":
    main()
