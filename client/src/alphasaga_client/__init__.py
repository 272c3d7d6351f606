"""The one client API of AlphaSaga (``AlphaSaga``), for every front end: the CLI, the
HTTP API, agents' tools, tests and benchmarks.

What it returns is plain data: ``SagaSummary`` rows of the saga list, ``Frame``s of time
travel, ``Lifecycle`` events, ``DeadLetter``s. Loaded on first use, so that importing a
small part (``alphasaga_client.timefmt``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alphasaga_readmodel.summaries import SagaFilter, SagaSummary
    from alphasaga_shared.errors import (
        Ambiguous,
        ClientError,
        Corrupt,
        InvalidRequest,
        InvalidTransition,
        NotFound,
        Unavailable,
    )

    from .api import AlphaSaga
    from .campaigns import CampaignStatus
    from .commands import Submitted
    from .deadletters import DeadLetter
    from .operations import Probe
    from .reads import Check, Detail, LogFilter, Replay
    from .streams import Lifecycle
    from .timetravel import Frame

__all__ = [
    "AlphaSaga",
    "Ambiguous",
    "CampaignStatus",
    "Check",
    "ClientError",
    "Corrupt",
    "DeadLetter",
    "Detail",
    "Frame",
    "InvalidRequest",
    "InvalidTransition",
    "Lifecycle",
    "LogFilter",
    "NotFound",
    "Probe",
    "Replay",
    "SagaFilter",
    "SagaSummary",
    "Submitted",
    "Unavailable",
]

_WHERE = {
    "AlphaSaga": ".api",
    "CampaignStatus": ".campaigns",
    "Check": ".reads",
    "Detail": ".reads",
    "Probe": ".operations",
    "Lifecycle": ".streams",
    "LogFilter": ".reads",
    "Replay": ".reads",
    "Submitted": ".commands",
    "DeadLetter": ".deadletters",
    "Frame": ".timetravel",
    "SagaFilter": "alphasaga_readmodel.summaries",
    "SagaSummary": "alphasaga_readmodel.summaries",
    **dict.fromkeys(
        ("Ambiguous", "ClientError", "Corrupt", "InvalidRequest", "InvalidTransition", "NotFound", "Unavailable"),
        "alphasaga_shared.errors",
    ),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
