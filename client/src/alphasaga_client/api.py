"""``AlphaSaga``: the one way in. The CLI, the tests, the benchmarks and every other front
end call it; none of them holds SQL or Redis commands of its own.

Connections are opened when first needed and closed with the client, so that a command
that only reads the event store never needs Redis, and the other way round::

    async with AlphaSaga(settings) as client:
        submitted = await client.submit(ResearchRequest(dataset="sp500"))
        async for event in client.follow(submitted.saga_id):
            print(event.event.TYPE)

Its methods are grouped by concern, one module each: ``commands`` (submit, cancel,
publish), ``reads`` (status, list, detail, events, replay, check, the log), ``streams``
(follow, watch, tail), ``artifacts``, ``campaigns``, ``archiving`` (retention), and ``operations`` (dead letters,
health checks),
over ``core`` (settings, connections, finding a saga).
"""

from __future__ import annotations

from dataclasses import dataclass

from .archiving import Archiving
from .artifacts import Artifacts
from .campaigns import Campaigns
from .commands import Commands
from .operations import DeadLetters, Health
from .reads import Reads
from .streams import Streams


@dataclass
class AlphaSaga(Commands, Reads, Streams, Artifacts, Campaigns, Archiving, DeadLetters, Health):
    """The client API (see the module docstring)."""
