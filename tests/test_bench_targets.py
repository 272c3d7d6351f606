"""The orchestration bench's verdicts (bench/orchestration.py): ratios to the best peer of
the same run, and a CPU figure that is not a real measurement is never called met."""

from __future__ import annotations

from bench.orchestration import Figures, targets


def _row(lines: list[str], starts: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {starts}"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_throughput_is_compared_with_the_faster_restate_setting() -> None:
    ours = Figures("AlphaSaga, 1 orchestrator", rates=[300.0], latencies=[[20.0] * 10], cpu_ms=[3.5])
    slow = Figures("Restate (default partitions)", rates=[100.0], latencies=[[10.0] * 10], cpu_ms=[6.0])
    fast = Figures("Restate (4 partitions)", rates=[250.0], latencies=[[15.0] * 10], cpu_ms=[5.0])
    lines = targets([ours, slow, fast])
    assert _row(lines, "sagas/s")[1:] == ["1.20x", "no"]
    # The p50 is compared with the setting whose p50 is lower, whatever its throughput.
    assert _row(lines, "one in flight")[1:] == ["20.0 ms (2.00x)", "no"]
    assert _row(lines, "CPU per saga")[1:] == ["3.5 ms", "yes"]


def test_a_negative_or_missing_cpu_figure_is_not_met() -> None:
    for cpu in ([-16.1], []):
        ours = Figures("AlphaSaga, 1 orchestrator", rates=[300.0], cpu_ms=cpu)
        assert _row(targets([ours]), "CPU per saga")[-1] == "no", cpu
