"""How the command line fails: one line on stderr starting with ``error:``, and an exit
code a script can branch on. Never a traceback (``ALPHASAGA_DEBUG=1`` shows one)."""

from __future__ import annotations

import re

# Exit codes: 0 done (the saga completed), 1 the saga did not complete or a check
# failed, 2 the command could not do its job (configuration, servers, input).
OK = 0
NOT_COMPLETED = 1
FAILED = 2


class CliError(Exception):
    """A failure to report in one line; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(one_line(message))
        self.code = code


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
