"""The reasoning service's handlers: thin wrappers around ``domain`` that store the
dataset and the hypothesis as artifacts and answer with references."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from alphasaga_contracts import steps as st
from alphasaga_shared import telemetry
from alphasaga_shared.eventstore import ArtifactStore
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.worker import KindHandlers, StepError, handles

from .domain import (
    DataError,
    LLMConfig,
    MeasurementError,
    Planner,
    PlannerError,
    dataset_to_csv_bytes,
    form_hypothesis,
    llm_planner,
    load_for_request,
    measure_with_warnings,
    plan_hypothesis,
)

log = logging.getLogger(__name__)


class LLMSettings(BaseSettings):
    """``ALPHASAGA_LLM_URL`` turns the language-model planner on (an OpenAI-compatible API)."""

    model_config = SettingsConfigDict(env_prefix="ALPHASAGA_LLM_", extra="ignore")
    url: str | None = None
    model: str = "gpt-4o-mini"
    api_key: str | None = None
    timeout_s: float = 60.0


def choose_planner(settings: LLMSettings) -> Planner:
    if not settings.url:
        return plan_hypothesis
    log.info("hypotheses come from the language model at %s (%s)", settings.url, settings.model)
    return llm_planner(
        LLMConfig(base_url=settings.url, model=settings.model, api_key=settings.api_key, timeout=settings.timeout_s)
    )


class DataSettings(BaseSettings):
    """Where users' own data files may be read from: ``ALPHASAGA_DATA_ROOTS``, folders
    separated by the system's path separator (``:``), by default the data directory."""

    model_config = SettingsConfigDict(env_prefix="ALPHASAGA_", extra="ignore")
    data_roots: str = ""
    data_dir: Path = Path(".alphasaga")

    def roots(self) -> list[Path]:
        given = [Path(p) for p in self.data_roots.split(os.pathsep) if p]
        return given or [self.data_dir]


class Reasoning:
    def __init__(self, artifacts: ArtifactStore, planner: Planner, data_roots: Sequence[Path]) -> None:
        self.artifacts = artifacts
        self.planner = planner
        self.load = functools.partial(load_for_request, data_roots=tuple(data_roots))

    async def form(self, cmd: st.FormHypothesis) -> st.HypothesisFormed:
        try:
            hypothesis, bars, held_out, warnings = await asyncio.to_thread(
                form_hypothesis,
                cmd.request,
                load=telemetry.traced("load data", self.load),
                planner=telemetry.traced("plan" if self.planner is plan_hypothesis else "plan with LLM", self.planner),
                measurer=telemetry.traced("measure", measure_with_warnings),
            )
        except (DataError, MeasurementError) as exc:
            raise StepError("invalid_input", str(exc)) from None
        except PlannerError as exc:
            # A model that answered badly may answer well next time; the rules do not change.
            raise StepError("planner", str(exc), retryable=self.planner is not plan_hypothesis) from None
        for warning in warnings:
            log.info("saga %s: %s", cmd.saga_id, warning)
        dataset = await self.artifacts.put(
            cmd.saga_id, cmd.step, "dataset.csv", "dataset", dataset_to_csv_bytes(bars), "text/csv"
        )
        await self.artifacts.put(
            cmd.saga_id,
            cmd.step,
            "hypothesis.json",
            "hypothesis",
            hypothesis.model_dump_json(indent=2).encode(),
            "application/json",
        )
        return st.HypothesisFormed(
            saga_id=cmd.saga_id,
            step=cmd.step,
            attempt=cmd.attempt,
            hypothesis=hypothesis,
            dataset=dataset,
            out_of_sample_start=None if held_out is None else held_out.date(),
        )

    async def undo(self, cmd: st.CompensateStep) -> None:
        await self.artifacts.remove_step(cmd.saga_id, cmd.step)


async def make_handlers(ctx: ServiceContext) -> list[KindHandlers]:
    roots = DataSettings().roots()
    log.info("users' data files are read from %s only", ", ".join(str(r) for r in roots))
    reasoning = Reasoning(ArtifactStore(ctx.store.pool), choose_planner(LLMSettings()), roots)
    return [handles(st.REASONING, run=reasoning.form, undo=reasoning.undo)]
