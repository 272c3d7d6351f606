"""End to end: the five services as separate processes over real Redis and PostgreSQL,
doing the real research work on real market data."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from alphasaga_cli.output import verdict_line
from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from conftest import Servers
from tests.support.helpers import ROOT, running_stack

SAGA_TIMEOUT = 240


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(servers.redis_url, servers.database_url, tmp_path_factory.mktemp("stack"), "e2e") as s:
        yield s


@pytest.fixture(scope="module")
def jetstream_stack(servers: Servers, nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("jetstream-stack")
    with running_stack(servers.redis_url, servers.database_url, data, "e2ejs", broker_url=nats_url) as s:
        yield s


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[AlphaSaga]:
    async with AlphaSaga(stack.settings) as c:
        yield c


async def outcome_of(client: AlphaSaga, saga_id: uuid.UUID, after: str) -> sg.SagaEvent:
    """The lifecycle event that ended the saga."""
    events = [u.event async for u in client.follow(saga_id, after=after, timeout_s=SAGA_TIMEOUT)]
    return events[-1]


async def run_saga(client: AlphaSaga, request: ResearchRequest) -> sg.SagaEvent:
    submitted = await client.submit(request)
    return await outcome_of(client, submitted.saga_id, submitted.follow_from)


def documented(name: str, language: str) -> str:
    text = (ROOT / "docs" / "wire-format.md").read_text()
    match = re.search(rf"<!-- {name} -->\s*```{language}\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/wire-format.md lost its {name}"
    return match.group(1)


def redis_cli_example() -> str:
    return documented("redis-cli-example", "bash")


async def test_the_documented_redis_cli_example_starts_a_saga_that_completes(stack: Stack, client: AlphaSaga) -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed on this machine")
    example = redis_cli_example()
    documented_id = re.search(r"message_id (\S+)", example)
    assert documented_id
    message_id = str(uuid.uuid4())
    command = example.replace("alphasaga:cmd:", f"{stack.settings.namespace}:cmd:").replace(
        documented_id.group(1), message_id
    )
    tip = await client.lifecycle_cursor()
    done = subprocess.run(
        ["bash", "-c", command],
        env={**stack.env(), "ALPHASAGA_REDIS_URL": stack.redis_url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    saga_id = sg.derived_saga_id(message_id)
    outcome = await outcome_of(client, saga_id, tip)
    assert isinstance(outcome, sg.SagaCompleted), outcome
    assert set(outcome.outputs) >= {"report", "chart", "metrics", "verdict"}
    # The verdict is the hold-out's and names the sandbox; the printed line says both.
    verdict = outcome.outputs["verdict"]
    assert verdict["period"] == "out_of_sample" and verdict["sandbox"].split("+")[0] in ("bubblewrap", "namespaces")
    line = verdict_line(verdict, outcome.outputs["metrics"])
    assert f"[out of sample {verdict['start']} to {verdict['end']}]" in line
    assert f"code ran in sandbox {verdict['sandbox']}" in line
    kinds = {link.ref.kind for link in await client.artifacts(saga_id)}
    assert kinds == {"dataset", "hypothesis", "code", "sandbox", "signals", "model", "predictions", "report", "chart"}


async def test_a_research_saga_completes_on_nats_jetstream(jetstream_stack: Stack) -> None:
    """The same services on JetStream instead of Redis (issue #27): only the URL differs."""
    async with AlphaSaga(jetstream_stack.settings) as client:
        outcome = await run_saga(client, ResearchRequest(dataset="sp500", start="2010-01-01"))  # type: ignore[arg-type]
    assert isinstance(outcome, sg.SagaCompleted), outcome


async def test_same_request_twice_gives_identical_metrics(stack: Stack, client: AlphaSaga) -> None:
    request = ResearchRequest(dataset="sp500", start="2005-01-01", end="2015-12-31")  # type: ignore[arg-type]
    first, second = await asyncio.gather(run_saga(client, request), run_saga(client, request))
    assert isinstance(first, sg.SagaCompleted) and isinstance(second, sg.SagaCompleted)
    assert first.outputs["metrics"] == second.outputs["metrics"]
    assert first.outputs["verdict"] == second.outputs["verdict"]
    png = await client.artifact(first.outputs["chart"]["sha256"])
    assert png.startswith(b"\x89PNG")


async def test_a_csv_with_a_negative_price_fails_reasoning_naming_the_row(stack: Stack, client: AlphaSaga) -> None:
    csv = stack.settings.data_dir / f"prices-{uuid.uuid4().hex[:6]}.csv"  # inside the data roots
    rows = ["date,open,high,low,close,volume"]
    for i in range(120):
        price = 100 + i
        rows.append(f"2020-01-{1 + i % 28:02d},{price},{price + 1},{price - 1},{price},1000")
    csv.write_text("\n".join(rows) + "\n")  # unsorted dates (the month wraps at row 29)
    outcome = await run_saga(client, ResearchRequest(data_path=str(csv)))
    assert isinstance(outcome, sg.SagaRolledBack)
    assert "row 29" in outcome.reason and "reasoning failed" in outcome.reason, outcome.reason

    rows = ["date,open,high,low,close"] + [f"2020-{1 + i // 28:02d}-{1 + i % 28:02d},10,11,9,10" for i in range(100)]
    rows[43] = "2020-02-15,10,11,9,-10"
    csv.write_text("\n".join(rows) + "\n")
    outcome = await run_saga(client, ResearchRequest(data_path=str(csv)))
    assert isinstance(outcome, sg.SagaRolledBack)
    assert "row 43" in outcome.reason, outcome.reason


@pytest.mark.parametrize(
    ("data_path", "why"),
    [
        pytest.param("x" * 300 + ".csv", "File name too long", id="a name too long"),
        pytest.param("/etc/passwd.csv", "outside the data roots", id="outside the data roots"),
        pytest.param("../../../../etc/hosts.csv", "outside the data roots", id="dot-dot"),
    ],
)
async def test_a_data_path_that_cannot_be_used_fails_reasoning_at_once_as_invalid_input(
    stack: Stack, client: AlphaSaga, data_path: str, why: str
) -> None:
    outcome = await run_saga(client, ResearchRequest(data_path=data_path))
    assert isinstance(outcome, sg.SagaRolledBack), outcome
    assert outcome.reason.startswith("reasoning failed (invalid_input): file "), outcome.reason
    assert why in outcome.reason and "gave up" not in outcome.reason, "not retried: the input is at fault"


async def test_ml_that_cannot_train_rolls_back_and_removes_code_and_hypothesis(stack: Stack, client: AlphaSaga) -> None:
    request = ResearchRequest(dataset="sp500", start="2017-01-01", end="2017-08-31")  # type: ignore[arg-type]
    outcome = await run_saga(client, request)
    assert isinstance(outcome, sg.SagaRolledBack), outcome
    assert "ml failed" in outcome.reason and "rows" in outcome.reason, outcome.reason
    left: list[Any] = await client.artifacts(outcome.saga_id)
    assert left == [], f"compensation left artifacts behind: {left}"
    history = await client.events(outcome.saga_id)
    compensated = [e.data["step"] for e in history if e.type.endswith(".StepCompensated")]
    assert compensated == ["codegen", "reasoning"], "newest first"
    assert history[-1].type.endswith(".RolledBack")
    assert not any(e.data.get("step") == "backtest" for e in history), "backtest is never commanded"


def test_the_documented_way_to_follow_a_saga_sees_it_from_start_to_end(stack: Stack) -> None:
    """A client written from docs/wire-format.md alone: its Python example, run as it is."""
    done = subprocess.run(
        [sys.executable, "-c", documented("follow-example", "python")],
        env={**stack.env(), "ALPHASAGA_REDIS_URL": stack.redis_url},
        capture_output=True,
        text=True,
        timeout=SAGA_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    types = [line.split()[0] for line in done.stdout.splitlines()]
    assert types[0] == "sagas.SagaStarted", "the first event is not missed"
    assert types[-1] == "sagas.SagaCompleted", done.stdout
