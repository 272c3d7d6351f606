"""What the templates show, shaped from the use cases' answers: a list row, an event, a
time-travel frame, a saga's artifacts (its code highlighted, its report read) and the
equity chart. The artifacts are fetched here through the use case; the rest is pure."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi.encoders import jsonable_encoder

from alphasaga_client.campaigns import CAMPAIGN, CampaignStatus
from alphasaga_client.timetravel import Frame, event_name, readable
from alphasaga_client.usecases import Caller, research
from alphasaga_contracts import SagaState
from alphasaga_contracts.campaign import child_id
from alphasaga_readmodel.summaries import SagaSummary
from alphasaga_shared.eventstore import ArtifactLink, RecordedEvent

from . import charts, highlight

_TEXT_KINDS = frozenset({"code", "report", "hypothesis"})


def cursor(at: dt.datetime, saga_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{saga_id}".encode()).decode().rstrip("=")


def read_cursor(text: str) -> tuple[dt.datetime, uuid.UUID] | None:
    """A cursor this page gave, or None (absent or not one of ours: the first page)."""
    if not text or len(text) > 200:
        return None
    try:
        at, _, saga_id = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().partition("|")
        return dt.datetime.fromisoformat(at), uuid.UUID(saga_id)
    except ValueError:
        return None


def row(s: SagaSummary) -> dict[str, Any]:
    metrics = s.metrics or {}
    verdict = s.verdict or {}
    sharpe = metrics.get("sharpe")
    return {
        "id": str(s.saga_id),
        "short": str(s.saga_id)[:8],
        "state": s.state,
        "terminal": s.terminal,
        "workflow": f"{s.workflow} v{s.workflow_version}",
        "dataset": s.dataset or "",
        "step": s.current_step or "",
        "steps_done": len(s.steps_completed),
        "verdict": "" if not verdict else ("accepted" if verdict.get("accepted") else "rejected"),
        "sharpe": f"{sharpe:.2f}" if isinstance(sharpe, int | float) else "",
        "started": s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        "started_iso": s.started_at.isoformat(),
        "updated_iso": s.updated_at.isoformat(),
        "failure": s.failure or "",
        "campaign": s.workflow == CAMPAIGN,
    }


def forked_from(s: SagaSummary) -> dict[str, Any] | None:
    state = json.loads(s.saga_state) if isinstance(s.saga_state, str) else s.saga_state
    found = state.get("forked_from") if isinstance(state, dict) else None
    return found if isinstance(found, dict) else None


def event(r: RecordedEvent) -> dict[str, Any]:
    data = readable(r.data)
    return {
        "version": r.version,
        "name": event_name(r.type),
        "at": r.recorded_at.strftime("%H:%M:%S.%f")[:-3],
        "step": data.get("step") if isinstance(data, dict) else None,
    }


def frame(f: Frame) -> dict[str, Any]:
    """The state after an event, flattened to (path, value) rows, each row marked when the
    event changed it."""
    changed = [c.path for c in f.changes]
    state = jsonable_encoder(f.state)
    rows = []
    for path, value in _flatten(state):
        hit = any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in changed)
        rows.append({"path": path, "value": value, "changed": hit})
    return {
        "version": f.number,
        "event": f.event,
        "recorded_at": f.row.recorded_at.isoformat(),
        "rows": rows,
        "changes": jsonable_encoder([c.as_json() for c in f.changes]),
        "json": json.dumps(state, indent=2, sort_keys=True),
    }


def _flatten(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict) and value:
        out = []
        for key in sorted(value):
            out.extend(_flatten(value[key], f"{path}.{key}" if path else str(key)))
        return out
    text = json.dumps(value, sort_keys=True)
    return [(path or "(state)", text if len(text) <= 400 else text[:400] + " …")]


@dataclass(frozen=True, slots=True)
class Shown:
    """An artifact as the page shows it: its link, and its text when it is small text."""

    step: str
    name: str
    kind: str
    sha256: str
    media_type: str
    size: int
    text: str | None


async def artifacts(c: Caller, links: Sequence[ArtifactLink], inline_bytes: int) -> list[Shown]:
    out = []
    for link in links:
        ref, text = link.ref, None
        if ref.kind in _TEXT_KINDS and ref.size <= inline_bytes:
            content, _ = await research.artifact(c, ref.sha256)
            text = content.decode("utf-8", "replace")
        out.append(Shown(link.step, link.name, ref.kind, ref.sha256, ref.media_type, ref.size, text))
    return out


def code(found: Sequence[Shown]) -> dict[str, str] | None:
    """The newest strategy code, highlighted."""
    code = [a for a in found if a.kind == "code" and a.text is not None]
    if not code:
        return None
    newest = code[-1]
    return {"name": newest.name, "html": highlight.python_html(newest.text or ""), "sha256": newest.sha256}


def report(found: Sequence[Shown]) -> dict[str, Any] | None:
    """The newest backtest report, read; None when there is none or it is not JSON."""
    reports = [a for a in found if a.kind == "report" and a.text is not None]
    if not reports:
        return None
    try:
        document = json.loads(reports[-1].text or "")
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    metrics = document.get("metrics") or {}
    return {
        "metrics": charts.paired_metrics(metrics) if isinstance(metrics, dict) else [],
        "periods": document.get("periods") or {},
        "verdict": document.get("verdict") or {},
        "trades": document.get("trades") or [],
        "notes": document.get("notes") or {},
    }


def model(rows: Sequence[RecordedEvent]) -> dict[str, Any] | None:
    """The trained model's summary from the step's own output: folds, scores, features."""
    for r in reversed(rows):
        if event_name(r.type) != "StepSucceeded":
            continue
        outputs = r.data.get("outputs") or {}
        found = outputs.get("model_metrics") if isinstance(outputs, dict) else None
        if isinstance(found, dict):
            importance = found.get("feature_importance") or {}
            return {
                "metrics": {k: v for k, v in found.items() if k != "feature_importance"},
                "importance": charts.bars(importance if isinstance(importance, dict) else {}),
            }
    return None


def equity_plot(reports: Mapping[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    """Equity after each trade and its drawdown, one line per saga."""
    equity = [
        charts.Series(name, charts.equity_from_trades(r["trades"])) for name, r in reports.items() if r is not None
    ]
    if not any(len(s.values) > 1 for s in equity):
        return None
    falls = [charts.Series(s.name, charts.drawdown(s.values)) for s in equity]
    return {
        "equity": charts.plot(equity, baseline=1.0),
        "drawdown": charts.plot(falls, baseline=0.0, height=100.0),
        "trades": [len(s.values) - 1 for s in equity],
    }


def parent_campaign(s: SagaSummary) -> str | None:
    """The campaign that started this saga, when one did (its ``parent``)."""
    state = json.loads(s.saga_state) if isinstance(s.saga_state, str) else s.saga_state
    found = state.get("parent") if isinstance(state, dict) else None
    return str(found) if found else None


def _ref_href(ref: Any) -> str | None:
    sha = ref.get("sha256") if isinstance(ref, dict) else None
    return f"/explorer/artifacts/{sha}" if isinstance(sha, str) else None


def campaign(status: CampaignStatus) -> dict[str, Any]:
    """A campaign as its page shows it: progress over the budget, the trials the verdicts
    count, the ranking by deflated Sharpe, each ended child, and the report's artifacts
    when the report step ran."""
    spec = status.spec
    report = status.report
    artifacts = None
    if report is not None:
        artifacts = {key: _ref_href(report.get(key)) for key in ("table", "chart", "equity")}
    return {
        "id": str(status.saga_id),
        "short": str(status.saga_id)[:8],
        "state": status.state,
        "terminal": SagaState(status.state).terminal,
        "failure": status.failure or "",
        "budget": spec.budget,
        "concurrency": spec.concurrency,
        "datasets": ", ".join(spec.datasets),
        "families": ", ".join(spec.families),
        "progress": {
            "done": status.done,
            "running": status.running,
            "failed": status.failed,
            "waiting": status.waiting,
        },
        # Each part's share of the budget, for the progress bar (the parts sum to the budget).
        "shares": {
            k: v / spec.budget
            for k, v in (("done", status.done), ("running", status.running), ("failed", status.failed))
        },
        "trials": status.measured.trials,
        "trial_sharpe_std": ""
        if status.measured.trial_sharpe_std is None
        else f"{status.measured.trial_sharpe_std:.3f}",
        "ranking": [
            {
                "rank": i + 1,
                "trial": r.trial,
                "saga_id": str(r.saga_id),
                "short": str(r.saga_id)[:8],
                "dataset": r.dataset,
                "family": r.family,
                "seed": r.seed,
                "sharpe": f"{r.sharpe:.2f}",
                "deflated_sharpe": f"{r.deflated_sharpe:.3f}",
                "when_run": "" if r.deflated_sharpe_when_run is None else f"{r.deflated_sharpe_when_run:.3f}",
                "verdict": "" if r.accepted is None else ("accepted" if r.accepted else "rejected"),
            }
            for i, r in enumerate(status.ranking)
        ],
        "ended": [
            {
                "trial": o.trial,
                "saga_id": str(o.saga_id),
                "short": str(o.saga_id)[:8],
                "dataset": o.dataset,
                "family": o.family,
                "state": o.state,
                "error": o.error or "",
            }
            for o in sorted(status.outcomes, key=lambda o: o.trial)
        ],
        "artifacts": artifacts,
        # Every child's saga id, known before it starts: the page follows their events.
        "children": [str(child_id(status.saga_id, trial)) for trial in range(1, spec.budget + 1)],
    }
