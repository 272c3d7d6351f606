"""The codegen service's handlers: render the hypothesis into strategy code, validate it,
run it in the sandbox with the look-ahead check (``domain``), and store the code, the
signals it produced and a record of the sandbox run as artifacts."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Callable, Sequence

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from alphasaga_contracts import steps as st
from alphasaga_contracts.research import Hypothesis
from alphasaga_shared import metrics, telemetry
from alphasaga_shared.eventstore import ArtifactStore
from alphasaga_shared.runner import ServiceContext, StartupError
from alphasaga_shared.worker import KindHandlers, StepError, handles

from .domain import (
    LookaheadDetected,
    LookaheadReport,
    RenderError,
    RuleViolation,
    Sandbox,
    SandboxKind,
    SandboxLimitExceeded,
    SandboxLimits,
    SandboxMode,
    SandboxUnavailable,
    StrategyRejected,
    UnreadableOutput,
    check_no_lookahead,
    render_strategy,
    resolve_sandbox,
    validate_strategy,
)
from .domain.proven import ProvenChecks, check_key
from .domain.sandbox import STRONG_SANDBOX, SandboxResult

log = logging.getLogger(__name__)


class SandboxSettings(BaseSettings):
    """Limits for one sandboxed run of generated code (``ALPHASAGA_SANDBOX_*``)."""

    model_config = SettingsConfigDict(env_prefix="ALPHASAGA_SANDBOX_", extra="ignore")
    cpu_seconds: int = 20
    memory_mb: int = 1024
    wall_seconds: float = 30.0
    disk_mb: int = 32
    mode: SandboxMode = "auto"
    # Jobs at once, each with a warm zygote of its own: two, so that an express job runs
    # beside a normal one (the worker's two lanes, docs/decisions/0023).
    pool: int = Field(2, ge=1, le=8)
    # Passed look-ahead checks kept, by what they checked (domain/proven.py); 0: none.
    proven_checks: int = Field(64, ge=0, le=4096)

    def limits(self) -> SandboxLimits:
        return SandboxLimits(
            cpu_seconds=self.cpu_seconds,
            memory_bytes=self.memory_mb << 20,
            wall_seconds=self.wall_seconds,
            disk_bytes=self.disk_mb << 20,
        )


def read_frame(content: bytes) -> pd.DataFrame:
    """A dated CSV artifact, written with 17 significant digits: pandas reads them back exactly."""
    return pd.read_csv(io.BytesIO(content), index_col="date", parse_dates=["date"])


def write_frame(frame: pd.DataFrame) -> bytes:
    text: str = frame.to_csv(index_label="date", float_format="%.17g")
    return text.encode()


def rejection(exc: StrategyRejected) -> StepError:
    """The step failure for a strategy that cannot be accepted, naming the rule or limit."""
    if isinstance(exc, RuleViolation):
        return StepError("rule_violation", f"generated code breaks rule '{exc.rule}': {exc}")
    if isinstance(exc, SandboxLimitExceeded):
        return StepError("sandbox_limit", f"generated code exceeded the {exc.limit} limit: {exc.detail}")
    if isinstance(exc, LookaheadDetected):
        return StepError("lookahead", f"generated code looks ahead: {exc}")
    if isinstance(exc, RenderError):
        return StepError("invalid_input", f"hypothesis cannot be rendered: {exc}")
    if isinstance(exc, UnreadableOutput):
        return StepError("invalid_input", f"generated code handed back what cannot be read: {exc}")
    return StepError("strategy_error", f"generated code failed: {exc}")


def choose_sandbox(mode: SandboxMode, *, production: bool) -> SandboxKind:
    """The sandbox this process will use, decided once at start-up, never silently.

    Production accepts only the strong sandbox; development takes what ``mode`` gives
    and warns, in the log and on stderr, when that is weaker. Raises ``StartupError``
    (one line, exit 2) when the required sandbox cannot run here.
    """
    try:
        kind = resolve_sandbox(STRONG_SANDBOX if production else mode)
    except SandboxUnavailable as exc:
        hint = "; ALPHASAGA_ENV=production requires it" if production else ""
        raise StartupError(f"cannot sandbox generated code: {exc}{hint}") from None
    if kind != STRONG_SANDBOX:
        warning = (
            f"generated code runs in the {kind} sandbox, not {STRONG_SANDBOX} "
            "(docs/security.md says what it does not stop); install bubblewrap for the strong one"
        )
        log.warning(warning)
        print(f"alphasaga-codegen: warning: {warning}", file=sys.stderr, flush=True)
    return kind


class TracedSandbox(Sandbox):
    """A span around each job of the generated code (the look-ahead proof is one job of many runs)."""

    def run(self, source: str, runs: Sequence[tuple[str, pd.DataFrame]], *, validate: bool = True) -> SandboxResult:
        with telemetry.span("sandbox run", {"alphasaga.sandbox": self.kind, "alphasaga.runs": len(runs)}):
            return super().run(source, runs, validate=validate)


def build_strategy(
    hypothesis: Hypothesis,
    bars: pd.DataFrame,
    sandbox: Sandbox,
    render: Callable[[Hypothesis], str],
    proven: ProvenChecks | None = None,
    dataset_sha256: str = "",
) -> tuple[str, LookaheadReport, bool]:
    """The source and its passed look-ahead check, and whether that check was one already
    passed on the same source and bars (``proven``, by SHA-256) rather than run again."""
    with telemetry.span("render"):
        source = render(hypothesis)
    with telemetry.span("validate"):
        validate_strategy(source)
    key = check_key(source, dataset_sha256, sandbox.kind, sandbox.limits) if proven and dataset_sha256 else None
    if key is not None and proven is not None and (report := proven.get(key)) is not None:
        return source, report, True
    with telemetry.span("look-ahead proof"):
        report = check_no_lookahead(source, bars, sandbox=sandbox)
    if key is not None and proven is not None:
        proven.put(key, report)
    return source, report, False


class Codegen:
    def __init__(
        self,
        artifacts: ArtifactStore,
        limits: SandboxLimits,
        render: Callable[[Hypothesis], str] = render_strategy,
        mode: SandboxMode = "auto",
        *,
        ahead: bool = True,
        pool: int = 1,
        proven: ProvenChecks | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.proven = proven
        self.limits = limits
        self.render = render
        # ``pool`` zygotes, started now, serve the jobs; each run is a fresh process one forks.
        self.sandbox = TracedSandbox(resolve_sandbox(mode), limits, ahead=ahead, size=pool)

    async def generate(self, cmd: st.GenerateStrategy) -> st.StrategyGenerated:
        bars = read_frame(await self.artifacts.get(cmd.dataset.sha256))
        try:
            source, report, reused = await asyncio.to_thread(
                build_strategy, cmd.hypothesis, bars, self.sandbox, self.render, self.proven, cmd.dataset.sha256
            )
        except StrategyRejected as exc:
            refused = rejection(exc)
            metrics.SANDBOX_RUNS.labels(refused.kind).inc()
            raise refused from None
        metrics.SANDBOX_RUNS.labels("ok").inc()
        run = report.sandbox
        put = self.artifacts.put
        code = await put(cmd.saga_id, cmd.step, "strategy.py", "code", source.encode(), "text/x-python")
        signals = await put(cmd.saga_id, cmd.step, "signals.csv", "signals", write_frame(run.frame), "text/csv")
        record = {
            "sandbox": run.label,
            "guards": list(run.guards),
            "limits": {
                "cpu_seconds": self.limits.cpu_seconds,
                "memory_bytes": self.limits.memory_bytes,
                "wall_seconds": self.limits.wall_seconds,
                "disk_bytes": self.limits.disk_bytes,
            },
            "wall_seconds": round(run.wall_seconds, 3),
            "cpu_seconds": round(run.cpu_seconds, 3),
            "peak_memory_bytes": run.peak_memory_bytes,
            "lookahead_mirrored_cuts": len(report.cuts.mirrored),
            "lookahead_truncated_cuts": [str(bars.index[c])[:10] for c in report.cuts.truncated],
            "lookahead_runs": report.runs,
            "lookahead_values_compared": report.values_compared,
            "code_sha256": code.sha256,
            # The same source on the same bars (by SHA-256), in the same sandbox under the
            # same limits, passed the check before in this process: its report is reused.
            "lookahead_check_reused": reused,
        }
        await put(
            cmd.saga_id,
            cmd.step,
            "sandbox.json",
            "sandbox",
            json.dumps(record, indent=2, sort_keys=True).encode(),
            "application/json",
        )
        return st.StrategyGenerated(
            saga_id=cmd.saga_id, step=cmd.step, attempt=cmd.attempt, code=code, signals=signals, sandbox=run.label
        )

    async def undo(self, cmd: st.CompensateStep) -> None:
        await self.artifacts.remove_step(cmd.saga_id, cmd.step)


async def make_handlers(ctx: ServiceContext) -> list[KindHandlers]:
    settings = SandboxSettings()
    kind = await asyncio.to_thread(choose_sandbox, settings.mode, production=ctx.settings.production)
    proven = ProvenChecks(settings.proven_checks)
    codegen = Codegen(ArtifactStore(ctx.store.pool), settings.limits(), mode=kind, pool=settings.pool, proven=proven)
    return [handles(st.CODEGEN, run=codegen.generate, undo=codegen.undo)]
