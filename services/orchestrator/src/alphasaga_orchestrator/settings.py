"""The orchestrator's own settings (``ALPHASAGA_*``), which the workers never load; the
runtime's (URLs, bus tuning, namespace) are ``alphasaga_shared.config.Settings``, and where
the workflows come from (``ALPHASAGA_WORKFLOWS``) is the saga package's, which front ends
read too."""

from __future__ import annotations

from pydantic import Field

from alphasaga_saga.workflow import WorkflowSettings


class OrchestratorSettings(WorkflowSettings):
    timer_poll_ms: int = Field(200, ge=1)
    timer_batch: int = Field(200, ge=1, description="Due deadlines fired per pass")
    snapshot_every: int = Field(100, ge=0, description="Snapshot a saga every N events; 0 = never")
    saga_cache_size: int = Field(
        5_000, ge=0, description="Sagas in flight an orchestrator keeps in memory (finished ones never); 0 = none"
    )
    run_relay: bool = Field(True, description="Run the outbox relay in the orchestrator process")
    run_projector: bool = Field(True, description="Keep the saga-summary projection in the orchestrator process")
