"""The Grafana dashboards as code: ``python infra/grafana/dashboards.py`` writes
``dashboards/*.json``, which compose provisions into Grafana's "AlphaSaga" folder.
Edit here, run it, commit both; tests/test_observability.py checks every panel query
(it parses with promtool and names only metric families the services export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}


def panel(title: str, targets: dict[str, str], unit: str = "short", *, width: int = 12) -> dict[str, Any]:
    """A time series panel; ``targets`` maps each query to its legend."""
    return {
        "type": "timeseries",
        "title": title,
        "datasource": PROMETHEUS,
        "gridPos": {"w": width, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets.items())
        ],
    }


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict[str, Any]:
    x = y = 0
    for i, p in enumerate(panels):  # two a row
        p["id"] = i + 1
        p["gridPos"].update({"x": x, "y": y})
        x += p["gridPos"]["w"]
        if x >= 24:
            x, y = 0, y + p["gridPos"]["h"]
    return {
        "uid": uid,
        "title": title,
        "tags": ["alphasaga"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "panels": panels,
    }


def q(quantile: float, metric: str, by: str, selector: str = "") -> str:
    return f"histogram_quantile({quantile}, sum by (le{by}) (rate({metric}_bucket{selector}[5m])))"


def overview() -> dict[str, Any]:
    return dashboard(
        "alphasaga-overview",
        "AlphaSaga overview",
        [
            panel(
                "Sagas per minute by outcome",
                {"sum by (event) (rate(alphasaga_sagas_total[5m])) * 60": "{{event}}"},
            ),
            panel(
                "Saga duration",
                {
                    q(0.5, "alphasaga_saga_seconds", ""): "p50",
                    q(0.95, "alphasaga_saga_seconds", ""): "p95",
                },
                "s",
            ),
            panel(
                "Step duration p50 and p95",
                {
                    q(0.5, "alphasaga_step_seconds", ", step", '{kind="step"}'): "{{step}} p50",
                    q(0.95, "alphasaga_step_seconds", ", step", '{kind="step"}'): "{{step}} p95",
                },
                "s",
            ),
            panel(
                "Lag per group",
                {"max by (stream, group) (alphasaga_stream_lag)": "{{group}} on {{stream}}"},
            ),
            panel(
                "Pending per group, and its oldest entry's idle time",
                {
                    "max by (stream, group) (alphasaga_stream_pending)": "{{group}} pending",
                    "max by (stream, group) (alphasaga_stream_oldest_pending_idle_seconds)": "{{group}} idle (s)",
                },
            ),
            panel("Dead letters", {"max by (stream) (alphasaga_dead_letters)": "{{stream}}"}),
            panel(
                "Relay lag and outbox backlog",
                {
                    "max(alphasaga_relay_lag_seconds)": "relay lag (s)",
                    "max(alphasaga_outbox_backlog)": "outbox backlog",
                },
            ),
            panel(
                "Retries, timeouts and due timers",
                {
                    "sum by (step) (rate(alphasaga_step_retries_total[5m])) * 60": "{{step}} retries/min",
                    "sum by (step) (rate(alphasaga_step_timeouts_total[5m])) * 60": "{{step}} timeouts/min",
                    "max(alphasaga_timer_backlog)": "due timers",
                },
            ),
        ],
        [],
    )


def per_service() -> dict[str, Any]:
    s = '{service="$service"}'
    variable = {
        "name": "service",
        "type": "query",
        "datasource": PROMETHEUS,
        "query": {"query": 'label_values(up{job="alphasaga"}, service)', "refId": "service"},
        "definition": 'label_values(up{job="alphasaga"}, service)',
        "refresh": 2,
        "current": {"text": "orchestrator", "value": "orchestrator"},
    }
    return dashboard(
        "alphasaga-service",
        "AlphaSaga service",
        [
            panel("Up", {f"up{s}": "{{instance}}"}),
            panel(
                "Messages handled per second",
                {f"sum by (stream, outcome) (rate(alphasaga_messages_total{s}[5m]))": "{{stream}} {{outcome}}"},
            ),
            panel(
                "Handler time p95",
                {q(0.95, "alphasaga_handler_seconds", ", stream", s): "{{stream}}"},
                "s",
            ),
            panel(
                "Published, reclaimed and outages per second",
                {
                    f"sum(rate(alphasaga_published_total{s}[5m]))": "published",
                    f"sum by (stream) (rate(alphasaga_reclaimed_total{s}[5m]))": "reclaimed {{stream}}",
                    f"sum by (loop) (rate(alphasaga_outages_total{s}[5m]))": "outage {{loop}}",
                },
            ),
            panel(
                "Outage of a store waited out, so far",
                {f"max by (store) (alphasaga_outage_seconds{s})": "{{store}}"},
                "s",
            ),
            panel("Consumers per group", {f"alphasaga_stream_consumers{s}": "{{group}} on {{stream}}"}),
            panel(
                "Event-store commits (orchestrator)",
                {
                    q(0.99, "alphasaga_eventstore_commit_seconds", "", s): "commit p99 (s)",
                    f"sum(rate(alphasaga_conflicts_total{s}[5m]))": "conflicts retried/s",
                },
            ),
            panel(
                "The work: sandbox runs, training and backtests",
                {
                    f"sum by (outcome) (rate(alphasaga_sandbox_runs_total{s}[5m])) * 60": "sandbox {{outcome}}/min",
                    q(0.95, "alphasaga_ml_training_seconds", "", s): "training p95 (s)",
                    q(0.95, "alphasaga_backtest_seconds", "", s): "backtest p95 (s)",
                },
            ),
            panel(
                "CPU and memory",
                {
                    f"rate(process_cpu_seconds_total{s}[5m])": "cpu {{instance}}",
                    f"process_resident_memory_bytes{s} / 2^20": "MiB {{instance}}",
                },
            ),
        ],
        [variable],
    )


DASHBOARDS = {"overview.json": overview, "service.json": per_service}


def main() -> None:
    for name, build in DASHBOARDS.items():
        (HERE / "dashboards" / name).write_text(json.dumps(build(), indent=2) + "\n")


if __name__ == "__main__":
    main()
