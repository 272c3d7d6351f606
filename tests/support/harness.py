"""Drives real orchestrator and simulated-worker processes for saga tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml

from alphasaga_client import AlphaSaga
from alphasaga_contracts.research import ResearchRequest
from alphasaga_saga.invariants import check_saga, kind
from alphasaga_saga.mapper import SagaMapper
from alphasaga_saga.streams import saga_id_of_stream, saga_stream
from alphasaga_saga.workflow import (
    DEFAULT_WORKFLOWS,
    RESEARCH_V1,
    WorkflowFileError,
    WorkflowRegistry,
    parse_workflows,
)
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore, outbox_stream
from tests.support.helpers import Proc, eventually

TERMINAL_KINDS = {"Completed": "COMPLETED", "RolledBack": "ROLLED_BACK", "CompensationFailed": "COMPENSATION_FAILED"}


def workflow(
    version: int = 1,
    *,
    timeout_s: float = 2.0,
    max_attempts: int = 3,
    backoff_s: float = 0.1,
    compensation_attempts: int = 3,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The built-in research workflow's steps with short timeouts and retries, as a
    workflow file's document."""
    steps = []
    for step in RESEARCH_V1.steps:
        name = step.name
        s: dict[str, Any] = {
            "name": name,
            "kind": step.kind.name,
            "timeout_s": timeout_s,
            "retry": {"max_attempts": max_attempts, "backoff_s": backoff_s, "jitter": 0.2},
            "compensation_retry": {"max_attempts": compensation_attempts, "backoff_s": backoff_s / 2},
        }
        s.update((overrides or {}).get(name, {}))
        steps.append(s)
    return {"name": "research", "version": version, "steps": steps}


def workflow_v2(*, timeout_s: float = 2.0, max_attempts: int = 3, backoff_s: float = 0.1) -> dict[str, Any]:
    """The built-in research v2 (a DAG: ml and backtest fanned out over the request's
    models, then select) with short timeouts and retries, as a workflow file's document."""
    built_in = DEFAULT_WORKFLOWS.get("research", 2)
    steps = []
    for step in built_in.steps:
        s: dict[str, Any] = {
            "name": step.name,
            "kind": step.kind.name,
            "timeout_s": timeout_s,
            "needs": list(built_in.needs(step.name)),
            "retry": {"max_attempts": max_attempts, "backoff_s": backoff_s, "jitter": 0.2},
            "compensation_retry": {"max_attempts": 3, "backoff_s": backoff_s / 2},
        }
        if step.fan_out is not None:
            s["for_each"] = {"in": step.fan_out.over, "as": step.fan_out.as_}
        steps.append(s)
    return {"name": "research", "version": 2, "steps": steps}


class Harness:
    def __init__(
        self, settings: Settings, env: dict[str, str], store: EventStore, redis: aioredis.Redis, tmp_path: Path
    ) -> None:
        self.settings, self.env, self.store, self.redis, self.tmp = settings, env, store, redis, tmp_path
        self.mapper = SagaMapper()
        self.procs: list[Proc] = []
        self._n = 0
        self._definitions: dict[tuple[str, int], dict[str, Any]] = {}

    def workflows_file(self, *definitions: dict[str, Any]) -> Path:
        self._n += 1
        self._definitions.update({(d["name"], int(d["version"])): d for d in definitions})
        path = self.tmp / f"workflows{self._n}.yaml"
        path.write_text(yaml.safe_dump({"workflows": list(definitions)}))
        return path

    def orchestrator(self, workflows: Path, name: str = "orch", **extra_env: str) -> Proc:
        self._n += 1
        env = {**self.env, "ALPHASAGA_WORKFLOWS": str(workflows), "ALPHASAGA_TIMER_POLL_MS": "50", **extra_env}
        proc = Proc.module("alphasaga_orchestrator", env, self.tmp / f"{name}-{self._n}.log")
        self.procs.append(proc)
        return proc

    def sim(self, env: dict[str, str] | None = None, **config: Any) -> Proc:
        self._n += 1
        env = {**self.env, **(env or {}), "SIM_CONFIG": json.dumps(config)}
        proc = Proc.module("tests.support.sim_workers", env, self.tmp / f"sim-{self._n}.log")
        self.procs.append(proc)
        return proc

    async def ready(self, *procs: Proc) -> None:
        for p in procs:
            await p.wait_for("ready", timeout=60)

    async def start(self, n: int = 1, workflow: str = "research", version: int | None = None) -> list[uuid.UUID]:
        request = ResearchRequest(dataset="sp500")
        async with AlphaSaga(self.settings) as client:
            return [
                (await client.submit(request, workflow=workflow, workflow_version=version)).saga_id for _ in range(n)
            ]

    def workflows(self) -> WorkflowRegistry:
        """The definitions the orchestrators were given (every file written), or the built-in
        ones. A definition naming a kind this process does not know (one a test's worker
        processes add) is left out: the checker then holds its sagas to a chain's rules if
        they ran one step at a time, and reports them otherwise."""
        if not self._definitions:
            return DEFAULT_WORKFLOWS
        known = []
        for d in self._definitions.values():
            try:
                parse_workflows({"workflows": [d]})
            except WorkflowFileError as exc:
                if "no step kind" not in str(exc):
                    raise
                continue
            known.append(d)
        return parse_workflows({"workflows": known}) if known else DEFAULT_WORKFLOWS

    async def states(self, saga_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (stream_id) stream_id, type FROM events WHERE stream_id = ANY($1::text[])"
                " ORDER BY stream_id, version DESC",
                [saga_stream(s) for s in saga_ids],
            )
        last = {saga_id_of_stream(r["stream_id"]): r["type"].rsplit(".", 1)[-1] for r in rows}
        return {s: TERMINAL_KINDS.get(last.get(s, ""), "RUNNING" if s in last else "NOT_STARTED") for s in saga_ids}

    async def wait_terminal(self, saga_ids: list[uuid.UUID], timeout: float = 60) -> dict[uuid.UUID, str]:
        async def done() -> dict[uuid.UUID, str] | None:
            states = await self.states(saga_ids)
            return states if all(v in TERMINAL_KINDS.values() for v in states.values()) else None

        try:
            result: dict[uuid.UUID, str] = await eventually(done, timeout=timeout, interval=0.2)
        except AssertionError:
            states = await self.states(saga_ids)
            stuck = {s: v for s, v in states.items() if v not in TERMINAL_KINDS.values()}
            raise AssertionError(f"{len(stuck)} sagas not terminal: {list(stuck.items())[:5]}") from None
        return result

    async def kinds(self, saga_id: uuid.UUID) -> list[str]:
        return [kind(e) for e in await self.store.read_stream(saga_stream(saga_id))]

    async def events(self, saga_id: uuid.UUID) -> list[Any]:
        return await self.store.read_stream(saga_stream(saga_id))

    async def violations(self, saga_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
        found = {}
        for s in saga_ids:
            problems = check_saga(
                s,
                await self.store.read_stream(saga_stream(s)),
                await self.store.read_stream(outbox_stream(str(s))),
                fold=self.mapper.fold,
                workflows=self.workflows(),
            )
            if problems:
                found[s] = problems
        return found

    def stop_all(self) -> None:
        for p in self.procs:
            p.stop()


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
