"""A codegen worker built on the real worker runtime whose every command raises an
exception it does not know (a bug): the bus retries it, then dead-letters it, and the
runtime tells the saga. Run as ``python -m tests.support.crashing_worker``."""

from __future__ import annotations

import os
from typing import Any

from alphasaga_contracts import Service
from alphasaga_contracts import steps as st
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.worker import KindHandlers, handles, run_worker


async def crash(_: Any) -> Any:
    # CRASH_NOISE: characters of noise the message ends with (an error text that is huge).
    noise = "x" * int(os.environ.get("CRASH_NOISE", "0"))
    raise ZeroDivisionError(f"simulated bug: division by zero in the strategy renderer {noise}")


async def undo(_: Any) -> None:
    return None


async def make_handlers(ctx: ServiceContext) -> list[KindHandlers]:
    return [handles(st.CODEGEN, run=crash, undo=undo)]


if __name__ == "__main__":
    run_worker(Service.CODEGEN, make_handlers)
