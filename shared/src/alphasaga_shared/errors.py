"""How a request is refused: one exception type per kind of answer a front end gives (the
CLI turns each into one line and an exit code, the HTTP API into a status, the MCP server
into a tool error). Here, below every library a front end uses (the client API, the read
model, accounts), so that each raises the same kinds; ``alphasaga_client`` exports them."""

from __future__ import annotations


class ClientError(Exception):
    """Something the caller can act on; the message is one line for a person. A ``hint``
    is for whoever runs this installation (where to look, which setting to check): the
    CLI shows it, the HTTP API answers with ``public`` alone, which names nothing of the
    server's configuration."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{message} ({hint})" if hint else message)
        self.public = message


class Forbidden(ClientError):
    """An action the caller's role, or its ownership of the saga, does not allow."""


class NotFound(ClientError):
    """No such saga, artifact or dead letter."""


class Ambiguous(ClientError):
    """A saga id prefix that names more than one saga."""


class InvalidRequest(ClientError):
    """Input that is refused before anything is published or stored."""


class InvalidTransition(ClientError):
    """An action the saga's state does not allow, such as cancelling a finished saga."""


class Unavailable(ClientError):
    """A server that cannot be reached, or a setting that names none."""


class Corrupt(ClientError):
    """Stored data that does not hold together: events that do not fold, an artifact
    whose content does not match its hash."""
