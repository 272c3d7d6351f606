"""Observability of a running stack: the five services export their spans to a real
OTLP/HTTP receiver and serve /metrics, which a real Prometheus scrapes.

One stack for the whole file: a completed saga and a rolled-back one are run once, and
each test looks at them from its side (the trace, the metrics, the dashboards)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import runpy
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_contracts.tracing import saga_trace_id
from conftest import Servers
from tests.support.helpers import ROOT, Proc, eventually
from tests.support.observed import ObservedStack, free_port, observed_stack
from tests.support.otlp import OtlpReceiver, ReceivedSpan, ancestors

SAGA_TIMEOUT = 240
SERVICE_NAMES = {f"alphasaga-{s}" for s in ("orchestrator", "reasoning", "codegen", "ml", "backtest")}
# The spans of the real work each worker does, by service.
DOMAIN_SPANS = {
    "alphasaga-reasoning": {"load data", "measure", "plan"},
    "alphasaga-codegen": {"render", "validate", "look-ahead proof", "sandbox run"},
    "alphasaga-ml": {"train walk-forward", "fold"},
    "alphasaga-backtest": {"backtest run", "backtest metrics", "backtest chart"},
}


@dataclass
class Ran:
    stack: ObservedStack
    receiver: OtlpReceiver
    completed: uuid.UUID
    rolled_back: uuid.UUID


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def stack(
    servers: Servers, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ObservedStack]:
    extra = {"ALPHASAGA_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    with observed_stack(
        servers.redis_url, servers.database_url, tmp_path_factory.mktemp("observed"), "obs", extra
    ) as s:
        yield s


async def run_saga(client: AlphaSaga, request: ResearchRequest) -> tuple[uuid.UUID, sg.SagaEvent]:
    submitted = await client.submit(request)
    events = [
        u.event async for u in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=SAGA_TIMEOUT)
    ]
    return submitted.saga_id, events[-1]


@pytest.fixture(scope="module")
def ran(stack: ObservedStack, receiver: OtlpReceiver) -> Ran:
    """A saga that completes and one that ml cannot train (too few rows), run at once."""

    async def both() -> tuple[uuid.UUID, uuid.UUID]:
        async with AlphaSaga(stack.settings) as client:
            (done, outcome), (undone, rolled) = await asyncio.gather(
                run_saga(client, ResearchRequest(dataset="sp500", start="2008-01-01", end="2013-12-31")),  # type: ignore[arg-type]
                run_saga(client, ResearchRequest(dataset="sp500", start="2017-01-01", end="2017-08-31")),  # type: ignore[arg-type]
            )
        assert isinstance(outcome, sg.SagaCompleted), outcome
        assert isinstance(rolled, sg.SagaRolledBack) and "ml failed" in rolled.reason, rolled
        return done, undone

    completed, rolled_back = asyncio.run(both())
    return Ran(stack, receiver, completed, rolled_back)


async def saga_trace(receiver: OtlpReceiver, saga_id: uuid.UUID, *, wanted: set[str]) -> list[ReceivedSpan]:
    """The saga's trace once the spans named ``wanted`` have arrived (the exporters send
    every 200 ms)."""
    trace_id = saga_trace_id(saga_id, "")

    async def arrived() -> list[ReceivedSpan] | str:
        spans = receiver.trace(trace_id)
        missing = wanted - {s.name for s in spans}
        return spans if not missing else f"{sorted(missing)} missing; {len(receiver.all())} spans received in all"

    result = await eventually(lambda: _truthy_list(arrived), timeout=30, interval=0.2)
    assert isinstance(result, list), result
    return result


async def _truthy_list(check: Callable[[], Awaitable[list[ReceivedSpan] | str]]) -> list[ReceivedSpan] | None:
    got = await check()
    if isinstance(got, str):
        print(got)
        return None
    return got


async def test_a_completed_saga_is_one_trace_across_the_five_services(ran: Ran) -> None:
    spans = await saga_trace(
        ran.receiver,
        ran.completed,
        wanted={"saga research", "step backtest", *DOMAIN_SPANS["alphasaga-backtest"]},
    )
    trace_id = saga_trace_id(ran.completed, "")
    # Every span that names this saga is in its one trace.
    naming = [s for s in ran.receiver.all() if s.attributes.get("alphasaga.saga_id") == str(ran.completed)]
    assert naming and {s.trace_id for s in naming} == {trace_id}
    assert {s.service for s in spans} == SERVICE_NAMES
    by_id = {s.span_id: s for s in spans}
    roots = [s for s in spans if not s.parent_id]
    assert [r.name for r in roots] == ["saga research"], roots
    root = roots[0]
    assert root.attributes["alphasaga.outcome"] == "completed"
    # No orphans: every parent arrived, and every span reaches the root through them.
    for s in spans:
        chain = list(ancestors(s, by_id))
        assert s is root or chain[-1] is root, f"{s.name} does not reach the saga's span"
    steps = {s.attributes["alphasaga.step"]: s for s in spans if s.name.startswith("step ")}
    assert set(steps) == {"reasoning", "codegen", "ml", "backtest"}
    for name, step in steps.items():
        assert step.parent_id == root.span_id
        assert step.attributes["alphasaga.outcome"] == "succeeded" and step.attributes["alphasaga.attempt"] == 1
        assert step.attributes["alphasaga.workflow"] == "research" and step.attributes["alphasaga.saga_id"]
        assert root.start_ns <= step.start_ns <= step.end_ns <= root.end_ns, name
    # The work of each worker hangs below its step's span.
    for service, names in DOMAIN_SPANS.items():
        work = [s for s in spans if s.service == service and s.name in names]
        assert {s.name for s in work} == names, service
        step = steps[service.removeprefix("alphasaga-")]
        for s in work:
            assert step in list(ancestors(s, by_id)), f"{s.name} is not under {step.name}"
    # The orchestrator's database calls sit under the decision that made them.
    database = [s for s in spans if s.service == "alphasaga-orchestrator" and s.attributes.get("db.system")]
    assert database, "no database spans from the orchestrator"
    for s in database:
        assert "saga decide" in {a.name for a in ancestors(s, by_id)}, s.name
    decides = [s for s in spans if s.name == "saga decide"]
    assert any(s.name == "saga commit" and by_id[s.parent_id] in decides for s in spans)


async def test_a_rolled_back_saga_shows_its_compensations_newest_step_first(ran: Ran) -> None:
    spans = await saga_trace(
        ran.receiver, ran.rolled_back, wanted={"saga research", "compensate codegen", "compensate reasoning"}
    )
    by_id = {s.span_id: s for s in spans}
    root = next(s for s in spans if not s.parent_id)
    assert root.name == "saga research" and root.attributes["alphasaga.outcome"] == "rolled_back"
    failed = [s for s in spans if s.name == "step ml"]
    assert failed and failed[-1].attributes["alphasaga.outcome"] == "failed"
    assert failed[-1].attributes["alphasaga.error_kind"] == "invalid_input"
    undone = sorted((s for s in spans if s.name.startswith("compensate ")), key=lambda s: s.start_ns)
    assert [s.attributes["alphasaga.step"] for s in undone] == ["codegen", "reasoning"]
    assert all(s.parent_id == root.span_id and s.attributes["alphasaga.outcome"] == "compensated" for s in undone)
    for s in spans:
        list(ancestors(s, by_id))  # no orphans


@pytest.fixture(scope="module")
def prometheus(stack: ObservedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus scraping the five services every second, with the alert rules."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian's prometheus package; .ci/run installs it)")
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "infra" / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {
                "job_name": "alphasaga",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}}
                    for name, port in stack.ports.items()
                ],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = Proc(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
        ],
        dict(os.environ),
        work / "prometheus.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{base}/-/ready"):
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not start:\n{proc.text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def api(base: str, path: str, **params: str) -> Any:
    with urllib.request.urlopen(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def values(base: str, query: str) -> list[tuple[dict[str, str], float]]:
    return [(r["metric"], float(r["value"][1])) for r in api(base, "query", query=query)["result"]]


async def test_a_real_prometheus_scrapes_the_saga_and_stream_series(ran: Ran, prometheus: str) -> None:
    ns = ran.stack.settings.namespace

    async def scraped() -> bool:
        up = values(prometheus, 'up{job="alphasaga"} == 1')
        done = values(prometheus, 'sum(alphasaga_sagas_total{event="completed", workflow="research"})')
        undone = values(prometheus, 'sum(alphasaga_sagas_total{event="rolled_back"})')
        return len(up) == 5 and bool(done) and done[0][1] >= 1 and bool(undone) and undone[0][1] >= 1

    await eventually(scraped, timeout=30, interval=0.5)
    durations = values(prometheus, "sum by (outcome) (alphasaga_saga_seconds_count)")
    assert {m["outcome"] for m, v in durations if v >= 1} >= {"completed", "rolled_back"}
    steps = values(prometheus, 'sum by (step) (alphasaga_step_seconds_count{kind="step", outcome="succeeded"})')
    assert {m["step"] for m, _ in steps} == {"reasoning", "codegen", "ml", "backtest"}
    # Stream series, read by the collector from Redis at each scrape: the ml group's one
    # consumer, seen by ml itself and by the orchestrator that watches it.
    consumers = values(prometheus, f'alphasaga_stream_consumers{{stream="{ns}:cmd:ml", group="ml"}}')
    assert sorted(m["service"] for m, v in consumers if v == 1) == ["ml", "orchestrator"]
    lag = values(prometheus, f'alphasaga_stream_lag{{stream="{ns}:evt:ml", group="orchestrator"}}')
    assert lag and lag[0][1] == 0
    assert values(prometheus, f'alphasaga_dead_letters{{stream="{ns}:cmd:orchestrator"}}')
    # The alert rules load in the real binary, and a saga's duration links to its trace.
    rules = [r for g in api(prometheus, "rules")["groups"] for r in g["rules"] if r["type"] == "alerting"]
    assert len(rules) >= 12 and all(r["health"] == "ok" for r in rules), rules
    now = time.time()
    exemplars = api(
        prometheus, "query_exemplars", query="alphasaga_saga_seconds_bucket", start=str(now - 600), end=str(now)
    )
    trace_ids = {e["labels"].get("trace_id") for series in exemplars for e in series["exemplars"]}
    assert saga_trace_id(ran.completed, "") in trace_ids


def dashboard_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for p in board["panels"]:
            for t in p["targets"]:
                out.append((board["title"], p["title"], t["expr"].replace("$service", "orchestrator")))
    return out


def exported_names(text: str) -> set[str]:
    """Every sample name a /metrics page can carry: those present, and those its TYPE
    lines announce (a labelled family has no sample until its first observation)."""
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        name, kind = kind_line
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
    return names


async def test_every_dashboard_query_parses_and_names_only_exported_families(
    ran: Ran, prometheus: str, tmp_path: Path
) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
    queries = dashboard_queries()
    assert {board for board, _, _ in queries} == {"AlphaSaga overview", "AlphaSaga service"}
    rules = {
        "groups": [
            {"name": "panels", "rules": [{"record": f"panel_{i}", "expr": e} for i, (*_, e) in enumerate(queries)]}
        ]
    }
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules))
    done = subprocess.run([tool, "check", "rules", str(tmp_path / "panels.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    exported = set().union(*(exported_names(ran.stack.scrape(s)) for s in ran.stack.ports))
    for board, title, expr in queries:
        for name in re.findall(r"\b((?:alphasaga|process)_[a-z0-9_]+)\b", expr):
            assert name in exported, f"{board} / {title}: {name} is not exported"
        api(prometheus, "query", query=expr)  # the real Prometheus evaluates it too
    # The dashboards on disk are what their code writes.
    generator = runpy.run_path(str(ROOT / "infra" / "grafana" / "dashboards.py"))
    for name, build in generator["DASHBOARDS"].items():
        on_disk = json.loads((ROOT / "infra" / "grafana" / "dashboards" / name).read_text())
        assert on_disk == json.loads(json.dumps(build())), f"run python infra/grafana/dashboards.py ({name})"
