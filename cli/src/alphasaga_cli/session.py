"""Running a command's work with a client: settings from the environment, connections
opened when first needed, everything closed when the work ends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga
    from alphasaga_shared.config import Settings

T = TypeVar("T")


def settings() -> Settings:
    from alphasaga_client.connections import load_settings

    return load_settings()


def with_client(work: Callable[[AlphaSaga], Awaitable[T]], config: Settings | None = None) -> T:
    import asyncio

    from alphasaga_client.api import AlphaSaga

    async def go() -> T:
        async with AlphaSaga(config or settings(), application_name="alphasaga-cli") as client:
            return await work(client)

    return asyncio.run(go())
