"""The orchestration bench's verdicts (bench/orchestration.py, issue #28): ratios to the best
peer of the same run, taken over every setting and client of the peer, and a CPU figure
that is not a real measurement is never called met."""

from __future__ import annotations

from bench.orchestration import Figures, targets


def _row(lines: list[str], starts: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {starts}"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def _restate(name: str, rate: float, p50: float, cpu: float, client: float) -> Figures:
    return Figures(name, rates=[rate], latencies=[[p50] * 10], cpu_ms=[cpu], client_cpu_ms=[client])


def test_each_target_is_compared_with_the_restate_setting_that_flatters_us_least() -> None:
    one = Figures("AlphaSaga, 1 orchestrator", rates=[300.0], latencies=[[20.0] * 10], cpu_ms=[2.4])
    two = Figures("AlphaSaga, 2 orchestrators", rates=[420.0], cpu_ms=[2.6])
    slow = _restate("Restate (default partitions), aiohttp /run", 100.0, 10.0, 6.0, 0.5)
    fast = _restate("Restate (4 partitions), h2load /run", 250.0, 15.0, 1.6, 0.3)
    lines = targets([one, two, slow, fast])
    # Throughput: the better of 1 and 2 orchestrators against the fastest setting.
    assert _row(lines, "sagas/s, the better")[1:] == ["1.68x", "yes"]
    # The p50 is compared with the setting whose p50 is lower, whatever its throughput.
    assert _row(lines, "one in flight")[1:] == ["20.0 ms (2.00x)", "no"]
    # CPU: against the setting whose server, service and client together cost least.
    assert _row(lines, "CPU per saga, the whole system, ≤ Restate")[1:] == ["2.4 ms (1.26x)", "no"]
    assert _row(lines, "CPU per saga, the whole system, ≤ 2.5")[1:] == ["2.4 ms", "yes"]
    assert _row(lines, "sagas/s with 2 orchestrators")[1:] == ["1.40x", "yes"]


def test_a_negative_or_missing_cpu_figure_is_not_met() -> None:
    for cpu in ([-16.1], []):
        ours = Figures("AlphaSaga, 1 orchestrator", rates=[300.0], cpu_ms=cpu)
        assert _row(targets([ours]), "CPU per saga")[-1] == "no", cpu
