"""The api service as a real uvicorn process beside the five services, over real Redis
and PostgreSQL, running real research: the saga's live stream and its resumption, its
detail, history, time travel and artifacts over HTTP, ownership of a cancel, and the MCP
server driven by the official SDK's client over streamable HTTP and over stdio."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import AnyUrl

from alphasaga_client import AlphaSaga
from alphasaga_shared.config import Settings
from cli.tests.clirunner import ALPHASAGA
from conftest import Servers
from tests.support.helpers import exported, remove_stack_data

SAGA_TIMEOUT = 240
TERMINAL = {"sagas.SagaCompleted", "sagas.SagaRolledBack", "sagas.SagaCompensationFailed"}


@dataclass
class Running:
    env: dict[str, str]
    settings: Settings
    url: str
    keys: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


async def _make_keys(settings: Settings) -> dict[str, str]:
    async with AlphaSaga(settings) as client:
        accounts = await client.accounts()
        for name in ("ada", "bob"):
            await accounts.create_user(name, "correct horse battery", "researcher")
        made = {}
        for who, role, user in (("viewer", "viewer", None), ("ada", "researcher", "ada"), ("bob", "researcher", "bob")):
            _, made[who] = await accounts.create_key(f"{who} key", role, username=user)
        return made


@pytest.fixture(scope="module")
def running(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """`alphasaga up`, as `make up` runs it: the five services and the api, whose address
    and admin key it prints (the admin key of these tests is that one)."""
    ns = f"api{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=servers.redis_url, database_url=servers.database_url, namespace=ns,
                        database_schema=f"t_{ns}", data_dir=tmp_path_factory.mktemp("apistack"))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
    env.update(
        ALPHASAGA_REDIS_URL=servers.redis_url,
        ALPHASAGA_DATABASE_URL=servers.database_url,
        ALPHASAGA_NAMESPACE=ns,
        ALPHASAGA_DATABASE_SCHEMA=settings.database_schema,
        ALPHASAGA_DATA_DIR=str(settings.data_dir),
        ALPHASAGA_API_PORT="0",  # and no ALPHASAGA_API_HOST: up's own default is 127.0.0.1
    )
    up = subprocess.Popen([str(ALPHASAGA), "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed: dict[str, str] = {}
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if (setting := exported(line)) is not None:
                printed[setting[0]] = setting[1]
            # Its settings come before "press Ctrl-C": a line they are not on ends the wait too.
            if "ALPHASAGA_API_KEY" in printed or line.startswith(("error", "press Ctrl-C")):
                break
        assert "ALPHASAGA_API_KEY" in printed, printed
        keys = {**asyncio.run(_make_keys(settings)), "admin": printed["ALPHASAGA_API_KEY"]}
        yield Running(env, settings, printed["ALPHASAGA_API_URL"], keys)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
        asyncio.run(remove_stack_data(servers.redis_url, servers.database_url, ns, settings.database_schema))


def test_up_printed_the_api_address_and_a_working_admin_key(running: Running) -> None:
    r = httpx.get(f"{running.url}/v1/users", headers=running.auth("admin"), timeout=30)
    assert r.status_code == 200, r.text  # an admin's route


def test_up_listens_on_loopback_and_signs_with_its_data_directorys_key(running: Running) -> None:
    """Not every address, and never the key that was in the source (issue #23)."""
    log = (running.settings.data_dir / "logs" / "api.log").read_text()
    assert "alphasaga-api: ready on http://127.0.0.1:" in log
    r = httpx.post(f"{running.url}/v1/auth/login", json={"username": "ada", "password": "correct horse battery"})
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    kept = (running.settings.data_dir / "api-signing-key").read_text().strip()
    for key, status in ((kept, 200), ("alphasaga-development-signing-key-not-secret", 401)):
        forged = jwt.encode(claims, key, algorithm="HS256")
        r = httpx.get(f"{running.url}/v1/sagas", headers={"Authorization": f"Bearer {forged}"}, timeout=30)
        assert r.status_code == status, (key == kept, r.text)


@asynccontextmanager
async def http(running: Running, who: str = "admin") -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url, headers=running.auth(who), timeout=30) as client:
        yield client


async def sse(client: httpx.AsyncClient, saga_id: str, last_event_id: str | None = None,
              stop_after: int | None = None) -> list[tuple[str, str]]:  # fmt: skip
    """(id, event) of each event until the saga ends, or until ``stop_after`` events: then the
    connection is dropped, as a client that goes away."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    seen: list[tuple[str, str]] = []
    async with client.stream("GET", f"/v1/sagas/{saga_id}/stream", headers=headers, timeout=SAGA_TIMEOUT) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event_id = event = None
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line == "" and event_id and event:
                seen.append((event_id, event))
                event_id = event = None
                if stop_after is not None and len(seen) >= stop_after:
                    break
    return seen


async def submit(client: httpx.AsyncClient, **request: Any) -> str:
    r = await client.post("/v1/research", json={"dataset": "sp500", "start": "2012-01-01", **request})
    assert r.status_code == 202, r.text
    saga_id: str = r.json()["saga_id"]
    return saga_id


@pytest.fixture(scope="module")
def completed(running: Running) -> dict[str, Any]:
    """A saga followed live, dropped after two events, and resumed with Last-Event-ID."""

    async def go() -> dict[str, Any]:
        async with http(running, "ada") as client:
            saga_id = await submit(client)
            first = await sse(client, saga_id, stop_after=2)
            rest = await sse(client, saga_id, last_event_id=first[-1][0])
            whole = await sse(client, saga_id)  # the whole story again, from the start
            return {"saga_id": saga_id, "first": first, "rest": rest, "whole": whole}

    return asyncio.run(go())


async def test_sse_resumed_after_the_terminal_event_ends_cleanly(running: Running, completed: dict[str, Any]) -> None:
    last_id = completed["whole"][-1][0]
    async with (
        http(running, "viewer") as client,
        client.stream("GET", f"/v1/sagas/{completed['saga_id']}/stream", headers={"Last-Event-ID": last_id}) as r,
    ):
        assert r.status_code == 200
        text = "".join([chunk async for chunk in r.aiter_text()])
    assert "event:" not in text and "id:" not in text, text  # nothing more, and no `event: timeout`


def test_sse_resumes_from_last_event_id_without_loss_or_duplicates(completed: dict[str, Any]) -> None:
    first, rest, whole = completed["first"], completed["rest"], completed["whole"]
    assert len(first) == 2 and first[0][1] == "sagas.SagaStarted"
    assert rest and rest[-1][1] in TERMINAL
    assert first + rest == whole
    ids = [i for i, _ in whole]
    assert len(set(ids)) == len(ids) and ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


async def test_a_saga_over_http_detail_history_time_travel_and_artifacts(
    running: Running, completed: dict[str, Any]
) -> None:
    saga_id = completed["saga_id"]
    async with http(running, "viewer") as client:
        detail = (await client.get(f"/v1/sagas/{saga_id}")).json()
        assert detail["saga"]["state"] in ("COMPLETED", "ROLLED_BACK")
        assert detail["outcome"]["state"] == detail["saga"]["state"]
        # The trace the saga is recorded in: the saga id's own bits when its submitter had no trace.
        assert detail["trace_id"] == uuid.UUID(saga_id).hex
        steps = detail["steps"]
        assert [s["step"] for s in steps][:1] == ["reasoning"] and all(s["duration_s"] >= 0 for s in steps)

        events = (await client.get(f"/v1/sagas/{saga_id}/events")).json()
        assert events[0]["event"] == "Started" and events[0]["data"]["saga_id"] == saga_id  # readable, not encoded
        later = (await client.get(f"/v1/sagas/{saga_id}/events", params={"after": 2})).json()
        assert [e["version"] for e in later] == [e["version"] for e in events[2:]]

        at3 = (await client.get(f"/v1/sagas/{saga_id}/state", params={"version": 3})).json()
        assert at3["version"] == 3 and at3["total_events"] == len(events) and at3["changes"]
        by_time = await client.get(f"/v1/sagas/{saga_id}/state", params={"at": events[2]["recorded_at"]})
        assert by_time.json()["version"] >= 3 and by_time.json()["state"]
        too_far = await client.get(f"/v1/sagas/{saga_id}/state", params={"version": len(events) + 1})
        assert too_far.status_code == 404

        links = (await client.get(f"/v1/sagas/{saga_id}/artifacts")).json()
        assert links
        for link in links:
            r = await client.get(link["href"])
            assert r.status_code == 200 and r.headers["content-type"].startswith(link["media_type"])
            assert hashlib.sha256(r.content).hexdigest() == link["sha256"]

        page = (await client.get("/v1/sagas", params={"limit": 1, "dataset": "sp500"})).json()
        assert len(page["items"]) == 1
        filtered = (await client.get("/v1/sagas", params={"state": detail["saga"]["state"], "sort": "oldest"})).json()
        assert saga_id in [s["saga_id"] for s in filtered["items"]]
        assert (await client.get("/v1/sagas/00000000-0000-0000-0000-000000000000/stream")).status_code == 404


async def test_cancelling_a_finished_saga_is_409(running: Running, completed: dict[str, Any]) -> None:
    async with http(running, "ada") as client:
        r = await client.post(f"/v1/sagas/{completed['saga_id']}/cancel")
    assert r.status_code == 409 and r.json()["type"].endswith("/invalid-transition")


async def test_list_pages_follow_each_other(running: Running, completed: dict[str, Any]) -> None:
    async with http(running, "admin") as client:
        for _ in range(2):
            await submit(client)
        await asyncio.sleep(1.0)  # the orchestrator records them
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/sagas", params=params)).json()
            seen += [s["saga_id"] for s in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        everything = (await client.get("/v1/sagas", params={"limit": 500})).json()["items"]
    assert seen == [s["saga_id"] for s in everything] and len(seen) >= 3


async def test_a_researcher_cancels_its_own_saga_and_no_one_elses(running: Running) -> None:
    async with http(running, "ada") as ada, http(running, "bob") as bob:
        saga_id = await submit(ada, start="2001-01-01")
        for _ in range(100):  # until the orchestrator has started it
            refused = await bob.post(f"/v1/sagas/{saga_id}/cancel")
            if refused.status_code != 404:
                break
            await asyncio.sleep(0.05)
        assert refused.status_code == 403, refused.text
        r = await ada.post(f"/v1/sagas/{saga_id}/cancel")
        assert r.status_code in (202, 409), r.text  # 409: it finished first


async def _mcp(running: Running, who: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(headers=running.auth(who), timeout=60) as client,
        streamable_http_client(f"{running.url}/mcp/", http_client=client) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


mcp_session = asynccontextmanager(_mcp)


async def test_mcp_over_http_with_the_sdk_client(running: Running) -> None:
    async with mcp_session(running, "ada") as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert {"submit_research", "get_saga", "list_sagas", "replay_saga", "get_artifact", "cancel_saga",
                "list_datasets"} <= tools.keys()  # fmt: skip
        # The request's schema is the contract's: a dataset, costs with bounds.
        request_schema = str(tools["submit_research"].inputSchema)
        assert "commission_bps" in request_schema and "dataset" in request_schema

        bad = await session.call_tool("submit_research", {"request": {"dataset": "no-such-data"}})
        assert bad.isError and "no-such-data" in str(bad.content[0])

        made = await session.call_tool("submit_research", {"request": {"dataset": "sp500", "start": "2012-01-01"}})
        assert not made.isError, made.content
        saga_id = made.structuredContent["saga_id"]  # type: ignore[index]
        done = await session.call_tool("wait_for_saga", {"saga_id": saga_id, "timeout_s": SAGA_TIMEOUT})
        assert done.structuredContent["state"] in ("COMPLETED", "ROLLED_BACK")  # type: ignore[index]
        if done.structuredContent["state"] == "COMPLETED":  # type: ignore[index]
            report = await session.read_resource(AnyUrl(f"saga://{saga_id}/report"))
            assert '"metrics"' in report.contents[0].text  # type: ignore[union-attr]
        replayed = await session.call_tool("replay_saga", {"saga_id": saga_id, "version": 1})
        assert replayed.structuredContent["event"] == "Started"  # type: ignore[index]

    async with mcp_session(running, "viewer") as viewer:
        refused = await viewer.call_tool("submit_research", {"request": {"dataset": "sp500"}})
        assert refused.isError and "researcher" in str(refused.content[0])


async def test_mcp_over_http_needs_a_key(running: Running) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{running.url}/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert r.status_code == 401


async def test_alphasaga_mcp_over_stdio(running: Running) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "alphasaga_cli", "mcp"], env=running.env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("list_datasets", {})
        assert not result.isError and "sp500" in str(result.content)
