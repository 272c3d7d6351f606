"""A research campaign end to end (issue #25): the five services as processes over real
Redis and PostgreSQL, a campaign of four real research sagas over two datasets, at most two
at once. It completes with its report; each child was told the trials its campaign had
measured when it started, the report deflates every child again with the final count, and
the invariant checker accepts the campaign and every child. A second campaign is cancelled
while its children run: they roll back, and so does it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga, CampaignStatus
from alphasaga_contracts import SagaState
from alphasaga_contracts.campaign import CampaignSpec
from conftest import Servers
from tests.support.helpers import running_stack

TIMEOUT_S = 600


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(servers.redis_url, servers.database_url, tmp_path_factory.mktemp("stack"), "cmp") as s:
        yield s


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[AlphaSaga]:
    async with AlphaSaga(stack.settings) as c:
        yield c


async def until(client: AlphaSaga, campaign: uuid.UUID, done: object) -> CampaignStatus:
    """Poll the campaign until ``done(status)``; the deadline is the test's own, not the code's."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while True:
        try:
            found = await client.campaign(campaign)
        except Exception:  # not started yet
            found = None
        if found is not None and done(found):  # type: ignore[operator]
            return found
        assert loop.time() < deadline, f"campaign {campaign}: {found}"
        await asyncio.sleep(0.5)


async def test_a_campaign_of_four_real_sagas_completes_with_its_report(client: AlphaSaga) -> None:
    spec = CampaignSpec(datasets=["sp500", "nasdaq"], families=["trend_following"], budget=4, concurrency=2)
    submitted = await client.submit_campaign(spec)
    found = await until(client, submitted.saga_id, lambda c: SagaState(c.state).terminal)
    assert found.state == "COMPLETED", found.failure
    assert found.done + found.failed == 4 and found.running == 0 and found.waiting == 0
    assert found.report is not None
    assert (
        found.report["trials"]
        == found.measured.trials
        == sum(o.candidates for o in found.outcomes if o.state == "COMPLETED")
    )
    assert [r.trial for r in found.ranking] == [
        r.trial for r in sorted(found.ranking, key=lambda r: (-r.deflated_sharpe, r.trial))
    ]
    for key in ("table", "chart", "equity"):
        content = await client.artifact(found.report[key]["sha256"])
        assert content.startswith(b"\x89PNG") if key != "table" else content.startswith(b"rank,trial,saga_id")
    # Each child was told what the campaign had measured when it started it, never more.
    store = await client.saga_store()
    told = {}
    for event in await client.events(submitted.saga_id):
        if event.type.endswith("ChildStarted"):
            told[uuid.UUID(event.data["child"])] = event.data["trials_before"]
    assert len(told) == 4 and min(told.values()) == 0
    for child, before in told.items():
        start = next(r.data for r in await store.outbox_of(submitted.saga_id) if r.data.get("saga_id") == str(child))
        assert start["request"]["trials"] == before + 1 and start["parent"] == str(submitted.saga_id)
        assert (await client.check(child)).violations == []
    completed = [o for o in found.outcomes if o.state == "COMPLETED"]
    for o in completed:  # the verdict of a child counts its own planner's choices on top
        assert o.trials == told[o.saga_id] + o.candidates
    # The ranking deflates every child again with the final figures (not monotone: the
    # measured spread may be below the skill-less one a child that ran early assumed).
    assert {r.saga_id for r in found.ranking} == {o.saga_id for o in completed if o.sharpe is not None}
    print(
        f"\ncampaign: {found.measured}; "
        + ", ".join(
            f"#{r.trial} DSR {r.deflated_sharpe:.3f} (when run {r.deflated_sharpe_when_run})" for r in found.ranking
        )
    )
    assert (await client.check(submitted.saga_id)).violations == []
    listed = await client.campaigns()
    assert submitted.saga_id in {s.saga_id for s in listed}


async def test_cancelling_a_campaign_rolls_back_its_running_children(client: AlphaSaga) -> None:
    spec = CampaignSpec(datasets=["sp500"], families=["mean_reversion"], budget=4, concurrency=2, seed=11)
    submitted = await client.submit_campaign(spec)
    await until(client, submitted.saga_id, lambda c: c.running == 2)
    await client.cancel(submitted.saga_id, "enough")
    found = await until(client, submitted.saga_id, lambda c: SagaState(c.state).terminal)
    assert found.state == "ROLLED_BACK" and found.running == 0 and found.waiting == 2
    for o in found.outcomes:
        assert o.state in ("ROLLED_BACK", "COMPLETED")  # a child may have finished before the cancel reached it
        assert (await client.check(o.saga_id)).violations == []
    assert (await client.check(submitted.saga_id)).violations == []
