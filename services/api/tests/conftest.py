"""The api app in this process over the test's own Redis namespace and PostgreSQL schema,
with a key for each role. The workers are not running: these tests are about the HTTP
layer, accounts and input; tests/test_api_stack.py drives real sagas through a real
uvicorn process."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from alphasaga_api.app import create_app
from alphasaga_api.runtime import Runtime
from alphasaga_api.settings import ApiSettings
from alphasaga_shared.config import Settings

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Api:
    app: FastAPI
    http: httpx.AsyncClient
    clock: Clock
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        rt: Runtime = self.app.state.runtime
        return rt

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"} if role in self.keys else {}

    async def sent(self, saga_id: str) -> dict[str, str]:
        """What an accepted submit sends: its start, recorded in the saga id's outbox, as the
        entry the relay publishes on the orchestrator's command stream."""
        from alphasaga_shared.outbox_rows import wire_fields

        store = await self.runtime.client.event_store()
        [start] = [r for r in await store.read_stream(f"outbox:{saga_id}") if r.type == "orchestrator.StartResearch"]
        stream, fields = wire_fields(start)
        assert stream == self.runtime.client.settings.streams.commands("orchestrator")
        return fields


@pytest.fixture
def api_settings() -> ApiSettings:
    return ApiSettings(max_body_bytes=64 * 1024, login_per_minute=1000)


@pytest.fixture
async def api(settings: Settings, api_settings: ApiSettings) -> AsyncIterator[Api]:
    clock = Clock()
    # MCP is driven through a real uvicorn process (tests/test_api_stack.py): its session
    # manager's task group cannot end in another task, as a pytest fixture may end it.
    app = create_app(settings, api_settings, clock=clock, with_mcp=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            made = Api(app, http, clock)
            accounts = made.runtime.accounts
            await accounts.create_user("ada", PASSWORD, "researcher")
            for role in ("viewer", "researcher", "admin"):
                _, made.keys[role] = await accounts.create_key(f"{role} key", role)
            yield made
