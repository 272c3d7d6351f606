"""research v2 end to end (``make test`` leaves it out: marked slow): the real services as
processes, with two ml processes so that the two ml branches can train at the same time,
on sp500. The saga completes with both branches run and the better one selected; the
events give each branch's timing. The ml processes are the real worker with one fault
(tests/support/faulty_ml.py): the linear branch of a request with seed 13 fails for
good, and the saga rolls back along the needs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.config import Settings
from conftest import Servers
from tests.support.faulty_ml import FAULT_SEED
from tests.support.helpers import remove_stack_data

pytestmark = pytest.mark.slow
SAGA_TIMEOUT = 600


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dag")
    ns = f"dag{uuid.uuid4().hex[:8]}"
    settings = Settings(
        redis_url=servers.redis_url,
        database_url=servers.database_url,
        namespace=ns,
        database_schema=f"t_{ns}",
        data_dir=tmp,
    )
    s = Stack(settings, say=print)
    ml: list[subprocess.Popen[bytes]] = []
    try:
        s.start(timeout=120)
        s.processes.pop("ml").terminate()  # replaced by two of the real worker with one fault
        for n in (1, 2):
            log = tmp / f"faulty-ml-{n}.log"
            ml.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.support.faulty_ml"],
                    env=s.env(),
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            wait_ready(log)
        yield s
    finally:
        for p in ml:
            p.terminate()
            p.wait(20)
        s.stop()
        asyncio.run(remove_stack_data(servers.redis_url, servers.database_url, ns, settings.database_schema))


def wait_ready(log: Path) -> None:
    import time

    deadline = time.monotonic() + 120
    while "alphasaga-ml: ready" not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"the second ml process did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[AlphaSaga]:
    async with AlphaSaga(stack.settings) as c:
        yield c


async def run(client: AlphaSaga, seed: int = 7) -> tuple[uuid.UUID, sg.SagaEvent]:
    submitted = await client.submit(ResearchRequest(dataset="sp500", seed=seed), workflow_version=2)
    events = [
        u.event async for u in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=SAGA_TIMEOUT)
    ]
    return submitted.saga_id, events[-1]


async def problems(client: AlphaSaga, saga_id: uuid.UUID) -> list[str]:
    return (await client.check(saga_id)).violations


async def test_v2_on_sp500_trains_both_models_side_by_side_and_selects_the_better(
    client: AlphaSaga, stack: Stack
) -> None:
    saga_id, outcome = await run(client)
    assert isinstance(outcome, sg.SagaCompleted), outcome
    assert outcome.outputs["selected"] in {"lightgbm", "linear"}
    assert outcome.outputs["criterion"] == "out_of_sample.deflated_sharpe"
    assert set(outcome.outputs["compared"]) == {"lightgbm", "linear"}
    rows = await client.events(saga_id)
    at = {
        (r.type.rsplit(".", 1)[-1], r.data["step"]): r.recorded_at
        for r in rows
        if r.type.endswith(("StepCommanded", "StepSucceeded"))
    }
    branches = ["ml[lightgbm]", "ml[linear]"]
    started = {b: at[("StepCommanded", b)] for b in branches}
    ended = {b: at[("StepSucceeded", b)] for b in branches}
    # Each branch from its command to its success; with two ml processes they train at
    # once (a worker process takes one command at a time), so the spans are alike rather
    # than the second one's holding the first's training too. Printed, not asserted: how
    # long training takes is the machine's business (figures in docs/benchmarks.md).
    spans = {b: round((ended[b] - started[b]).total_seconds(), 2) for b in branches}
    print(f"\nml branches from command to success: {spans} s; compared {outcome.outputs['compared']}")
    causes = {
        r.metadata["causation_id"] for r in rows if r.type.endswith("StepCommanded") and r.data["step"] in branches
    }
    assert len(causes) == 1, "both commanded in one decision, on codegen's reply"
    assert await problems(client, saga_id) == []


async def test_a_failed_ml_branch_rolls_back_the_other_and_the_earlier_steps(client: AlphaSaga, stack: Stack) -> None:
    saga_id, outcome = await run(client, seed=FAULT_SEED)
    assert isinstance(outcome, sg.SagaRolledBack), outcome
    assert "injected failure of the linear branch" in outcome.reason
    rows = await client.events(saga_id)
    compensated = [r.data["step"] for r in rows if r.type.endswith("StepCompensated")]
    print(f"\ncompensated in order: {compensated}")
    # The lightgbm branch was in flight (then it is undone first) or had gone on to its
    # backtest (then that is undone before it); codegen and reasoning come last.
    assert compensated in (
        ["ml[lightgbm]", "codegen", "reasoning"],
        ["backtest[lightgbm]", "ml[lightgbm]", "codegen", "reasoning"],
    )
    assert "ml[linear]" not in compensated, "the failed branch did nothing to undo"
    assert await problems(client, saga_id) == []


async def test_a_fork_from_ml_reuses_the_artifacts_before_it_and_the_diff_names_where_it_parts(
    client: AlphaSaga, stack: Stack
) -> None:
    submitted = await client.submit(ResearchRequest(dataset="sp500"))  # research v1
    ends = [
        u.event async for u in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=SAGA_TIMEOUT)
    ]
    assert isinstance(ends[-1], sg.SagaCompleted), ends[-1]
    source = submitted.saga_id
    fork = await client.fork(source, "ml", {"model_kind": "linear"})
    ends = [u.event async for u in client.follow(fork.saga_id, after=fork.follow_from, timeout_s=SAGA_TIMEOUT)]
    assert isinstance(ends[-1], sg.SagaCompleted), ends[-1]
    rows = await client.events(fork.saga_id)
    assert rows[0].data["forked_from"]["saga_id"] == str(source)
    store = await client.saga_store()
    sent = {}
    for saga in (source, fork.saga_id):
        sent[saga] = next(r.data for r in await store.outbox_of(saga) if r.type == "ml.TrainModel")
    for ref in ("dataset", "signals"):  # content-addressed: the fork names the very same artifacts
        assert sent[fork.saga_id][ref]["sha256"] == sent[source][ref]["sha256"]
    assert sent[fork.saga_id]["model_kind"] == "linear"
    found = await client.diff(source, fork.saga_id)
    d = found.first_divergence
    assert d is not None and d.a_event == d.b_event == "StepCommanded"
    assert [c.path for c in d.changes] == ["inputs.model_kind"]
    differing = [s.step for s in found.steps]
    print(f"\nfirst divergence: a #{d.a_number} b #{d.b_number} {d.a_event}; steps differing: {differing}")
    assert await problems(client, fork.saga_id) == []
