"""The codegen step, through the worker runtime, with real storage and the real sandbox:
code that breaks a rule or a limit fails the step with it named, and the service goes on
serving the next command."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from alphasaga_codegen.domain import SandboxLimits, render_strategy
from alphasaga_codegen.service import Codegen, write_frame
from alphasaga_contracts import Service, Streams
from alphasaga_contracts import steps as st
from alphasaga_contracts.research import Hypothesis, ResearchRequest
from alphasaga_shared.eventstore import ArtifactStore, EventStore
from alphasaga_shared.wire import Delivery, envelope_for
from alphasaga_shared.worker import Worker, handles
from tests.support.replies import HYPOTHESIS

# Tight, so that an infinite loop fails fast; the well-behaved code that must then still
# run gets room (importing pandas in the sandbox alone takes over 1 s of CPU on a slow VM).
LIMITS = SandboxLimits(cpu_seconds=2, memory_bytes=512 << 20, wall_seconds=5)
ROOMY = SandboxLimits(cpu_seconds=20, memory_bytes=768 << 20, wall_seconds=30)


def bars(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    index = pd.date_range("2015-01-01", periods=n, freq="B", name="date")
    return pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6}, index=index
    )


def tampered(extra: str) -> Callable[[Hypothesis], str]:
    """The real rendered module with a line added at the top of compute_signal."""

    def render(h: Hypothesis) -> str:
        source = render_strategy(h)
        marker = "def compute_signal("
        head, tail = source.split(marker, 1)
        signature, body = tail.split("\n", 1)
        return f"{head}{marker}{signature}\n    {extra}\n{body}"

    return render


@pytest.mark.parametrize(
    ("extra", "kind", "named"),
    [
        ("import os", "rule_violation", "import"),
        ("open('/etc/passwd')", "rule_violation", "forbidden_call"),
        ("for i in range(len(bars) ** 3): pass", "sandbox_limit", "limit"),
    ],
)
async def test_bad_generated_code_fails_the_step_naming_the_rule_and_the_service_keeps_serving(
    store: EventStore, extra: str, kind: str, named: str
) -> None:
    artifacts = ArtifactStore(store.pool)
    saga_id = uuid.uuid4()
    dataset = await artifacts.put(saga_id, "reasoning", "dataset.csv", "dataset", write_frame(bars()), "text/csv")
    bad = Codegen(artifacts, LIMITS, render=tampered(extra), ahead=False)
    worker = Worker(Service.CODEGEN, [handles(st.CODEGEN, run=bad.generate, undo=bad.undo)], Streams("t"))
    command = st.GenerateStrategy(
        saga_id=saga_id,
        step="codegen",
        attempt=1,
        request=ResearchRequest(dataset="sp500"),
        hypothesis=HYPOTHESIS,
        dataset=dataset,
    )
    env = envelope_for(command, correlation_id=str(saga_id))
    (out,) = await worker.handle(env, Delivery(stream="t:cmd:codegen", entry_id="1-0", fields={}))
    reply = out.envelope.message
    assert isinstance(reply, st.StepFailed) and reply.kind == "codegen", reply
    assert reply.error_kind == kind
    assert named in reply.error
    if kind == "sandbox_limit":
        assert "cpu_time" in reply.error or "wall_clock" in reply.error

    good = Codegen(artifacts, ROOMY)  # with a runner started ahead for the next job
    try:
        ok = await good.generate(command)
        again = await good.generate(command)
    finally:
        good.sandbox.close()
    assert isinstance(ok, st.StrategyGenerated) and ok.sandbox.split("+")[0] in ("bubblewrap", "namespaces")
    assert isinstance(again, st.StrategyGenerated) and again.signals == ok.signals


async def test_a_check_passed_on_the_same_code_and_bars_is_reused_and_recorded_as_such(store: EventStore) -> None:
    from alphasaga_codegen.domain.proven import ProvenChecks

    artifacts = ArtifactStore(store.pool)
    proven = ProvenChecks()
    codegen = Codegen(artifacts, ROOMY, ahead=False, proven=proven)
    jobs: list[int] = []
    run = codegen.sandbox.run

    def counted(*args: object, **kwargs: object) -> object:
        jobs.append(1)
        return run(*args, **kwargs)  # type: ignore[arg-type]

    codegen.sandbox.run = counted  # type: ignore[method-assign, assignment]

    async def generate(frame: pd.DataFrame) -> tuple[st.StrategyGenerated, dict[str, object]]:
        saga_id = uuid.uuid4()
        dataset = await artifacts.put(saga_id, "reasoning", "dataset.csv", "dataset", write_frame(frame), "text/csv")
        command = st.GenerateStrategy(
            saga_id=saga_id,
            step="codegen",
            attempt=1,
            request=ResearchRequest(dataset="sp500"),
            hypothesis=HYPOTHESIS,
            dataset=dataset,
        )
        done = await codegen.generate(command)
        (record,) = [link for link in await artifacts.list(saga_id) if link.name == "sandbox.json"]
        return done, json.loads(await artifacts.get(record.ref.sha256))

    first, first_record = await generate(bars())
    after_first = len(jobs)
    second, second_record = await generate(bars())
    assert len(jobs) == after_first, "the same code on the same bars was not checked again"
    assert (first_record["lookahead_check_reused"], second_record["lookahead_check_reused"]) == (False, True)
    assert second.signals.sha256 == first.signals.sha256 and second.code.sha256 == first.code.sha256
    _, third_record = await generate(bars(401))  # other bars: checked afresh
    assert len(jobs) > after_first and third_record["lookahead_check_reused"] is False
