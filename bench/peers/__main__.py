"""``python -m bench.peers [restate] [dbos]``: each available peer once on its own (a
burst of 1,000, 100 one in flight, CPU per workflow) as a Markdown table. A peer that
cannot be installed or started is one line, and the others still run.

DBOS uses the bench's PostgreSQL: ALPHASAGA_BENCH_DATABASE_URL (or _TEST_), else the
embedded one ``make bench`` would start."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator

from . import KINDS, PeerResult, PeerUnavailable, create, measure, unavailable, versions


@contextlib.contextmanager
def _database_url(needed: bool) -> Iterator[str]:
    if not needed:
        yield ""
        return
    from bench.common import servers

    with servers(redis=False) as s:  # DBOS needs PostgreSQL alone
        yield s.database_url


def table(results: list[PeerResult], burst_n: int) -> str:
    lines = [
        f"| peer | burst of {burst_n:,} | one in flight p50 | p99 | CPU per workflow: peer's processes | client |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rate = f"{r.per_second:,.0f} workflows/s"
        latency = f"{r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms"
        lines.append(f"| {r.name} | {rate} | {latency} | {r.cpu_ms:.1f} ms | {r.client_cpu_ms:.2f} ms |")
    return "\n".join(lines)


async def main(kinds: list[str], burst_n: int = 1000, one_n: int = 100) -> None:
    runnable: list[str] = []
    for kind in kinds:
        try:
            reason = unavailable(kind)
        except Exception as e:  # an install that broke in an unforeseen way skips the peer, no more
            reason = f"{kind}: {type(e).__name__}: {str(e)[:200]}"
        if reason is None:
            runnable.append(kind)
        else:
            print(f"- skipped: {reason}", flush=True)
    results: list[PeerResult] = []
    with _database_url("dbos" in runnable) as database_url:
        for kind in runnable:
            for peer in create(kind, database_url):
                try:
                    async with peer:
                        results.append(await measure(peer, burst_n, one_n))
                except PeerUnavailable as e:
                    print(f"- skipped: {e}", flush=True)
                except Exception as e:  # one peer's failure must not end the others' run
                    print(f"- failed: {peer.name}: {type(e).__name__}: {str(e)[:200]}", flush=True)
    if results:
        found = ", ".join(f"{k} {v}" for k, v in versions().items())
        print(f"\n## Peers, four no-op durable steps a workflow ({found})\n")
        print(table(results, burst_n), flush=True)


if __name__ == "__main__":
    asked = sys.argv[1:] or list(KINDS)
    asyncio.run(main(asked))
