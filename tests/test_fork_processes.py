"""Fork and diff over real orchestrator and simulated-worker processes: a fork of a
completed saga from ml reuses reasoning's and codegen's outputs (its ml command names the
same artifacts, by SHA-256), records where it came from in its first event, and ``diff``
names the first event where the two part."""

from __future__ import annotations

from alphasaga_client import AlphaSaga
from tests.support.harness import Harness, workflow


async def test_a_fork_from_ml_reuses_the_earlier_steps_and_the_diff_finds_where_it_parts(h: Harness) -> None:
    o, s = h.orchestrator(h.workflows_file(workflow())), h.sim()
    await h.ready(o, s)
    (source,) = await h.start()
    assert (await h.wait_terminal([source], timeout=60))[source] == "COMPLETED"
    async with AlphaSaga(h.settings) as client:
        sent = await client.fork(source, "ml", {"model_kind": "linear"})
        assert (await h.wait_terminal([sent.saga_id], timeout=60))[sent.saga_id] == "COMPLETED"
        events = await h.events(sent.saga_id)
        assert events[0].data["forked_from"]["saga_id"] == str(source)
        assert [e.data["step"] for e in events if e.type.endswith("StepCommanded")] == ["ml", "backtest"]
        store = await client.saga_store()
        ml = {}
        for saga in (source, sent.saga_id):
            rows = await store.outbox_of(saga)
            ml[saga] = next(r.data for r in rows if r.type == "ml.TrainModel")
        assert ml[sent.saga_id]["signals"]["sha256"] == ml[source]["signals"]["sha256"]
        assert ml[sent.saga_id]["dataset"]["sha256"] == ml[source]["dataset"]["sha256"]
        assert ml[sent.saga_id]["model_kind"] == "linear" != ml[source]["model_kind"]
        found = await client.diff(source, sent.saga_id)
        assert found.first_divergence is not None and found.first_divergence.a_event == "StepCommanded"
        assert [c.path for c in found.first_divergence.changes] == ["inputs.model_kind"]
    assert await h.violations([source, sent.saga_id]) == {}
