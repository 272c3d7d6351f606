"""``make bench``: run the benchmarks and print a Markdown table for docs/benchmarks.md.

``python -m bench SECTION ...`` runs a subset: the sections are ``NEEDS_SERVERS`` below, and
``research``, ``codegen`` and ``codecs``, which need no servers, so none are started when they run alone.
``history`` takes ``--million`` (or ``--sagas N``) instead of its 200,000 sagas, ``--short``, and ``--explain`` for
the plans of the hot queries.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
from typing import Any

from . import (
    api,
    archive,
    bus,
    campaign,
    cli,
    codecs,
    codegen,
    cpu,
    dag,
    e2e,
    eventstore,
    explorer,
    express,
    history,
    hops,
    jetstream,
    levers,
    observability,
    orchestration,
    orphans,
    ratelimit,
    reads,
    research,
    saga,
    snapshots,
)
from .common import servers

NEEDS_SERVERS = {
    "orchestration",
    "hops",
    "levers",
    "bus",
    "latency",
    "eventstore",
    "saga",
    "cpu",
    "e2e",
    "rate",
    "cli",
    "orphans",
    "api",
    "reads",
    "observability",
    "dag",
    "dagreal",
    "snapshots",
    "archive",
    "explorer",
    "campaign",
    "jetstream",
    "jsbus",
    "history",
    "express",
    "throughput",
    "ratelimit",
}


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| what | raw loop | AlphaSaga | ratio |", "|---|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['what']} | {r['raw']:,.0f} {r['unit']} | {r['ours']:,.0f} {r['unit']} | {r['ratio']:.0%} |")
    return "\n".join(out)


async def main(which: set[str], argv: list[str]) -> None:
    print(f"# bench run {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}, Python {platform.python_version()}")
    if which & NEEDS_SERVERS:
        with servers() as s:
            print(f"redis {s.redis_url}, postgres {s.database_url.split('@')[-1]}\n")
            if "orchestration" in which:
                print(await orchestration.report(s), flush=True)
            if "hops" in which:
                print(hops.markdown(await hops.measure(s)), flush=True)
            if "levers" in which:
                print(await levers.report(s), flush=True)
            if "bus" in which:
                print("## Bus throughput (median of 3, 20,000 messages, consumer in-process)\n")
                print(table(await bus.throughput(s, 20_000)), "\n", flush=True)
            if "latency" in which:
                print("## Per-hop latency: XADD in another process to the handler, 10 s at each rate\n")
                print("| consumer | msg/s | p50 | p99 | consumer's CPU, share of a core |\n|---|---:|---:|---:|---:|")
                for r in await bus.latency(s):
                    print(
                        f"| {r['label']} | {r['rate']:.0f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms | {r['cpu']:.0%} |"
                    )
                print(flush=True)
            if "eventstore" in which:
                print("\n## Event-store appends (median of 3, 2,000 transactions)\n")
                print(table(await eventstore.appends(s)), "\n", flush=True)
            if "saga" in which:
                print(await saga.report(s), flush=True)
            if "cpu" in which:
                print(await cpu.report(s), flush=True)
            if "e2e" in which:
                t = await e2e.saga_times(s)
                print("## A real research saga on sp500, five real services (issue #4)\n")
                print(
                    f"first run {t['first']:.2f} s; then median of {t['runs']:.0f}: {t['median']:.2f} s\n", flush=True
                )
            if "rate" in which:
                r = await e2e.saga_rate(s)
                print(f"## Research sagas per minute, {r['at_once']:.0f} submitted at once (issue #12)\n")
                print(f"{r['per_minute']:.1f} sagas per minute (median of {r['rounds']:.0f} bursts)\n", flush=True)
            if "throughput" in which:
                print(e2e.throughput_markdown(await e2e.research_throughput(s)), flush=True)
            if "orphans" in which:
                print(orphans.markdown(await orphans.recovery(s)), flush=True)
            if "observability" in which:
                print(await observability.report(s), flush=True)
            if "cli" in which:
                load = os.getloadavg()[0]
                times = cli.startup()
                times.update(await cli.status(s))
                print(cli.markdown(times, (load, os.getloadavg()[0])), flush=True)
            if "api" in which:
                print(api.markdown(await api.measure(s)), flush=True)
            if "reads" in which:
                print(reads.markdown(await reads.measure(s)), flush=True)
            if "dag" in which:
                print(dag.markdown(await dag.measure(s)), flush=True)
            if "dagreal" in which:
                print(dag.real_markdown(await dag.real(s)), flush=True)
            if "snapshots" in which:
                print(snapshots.markdown(await snapshots.measure(s)), flush=True)
            if "archive" in which:
                print(archive.markdown(await archive.measure(s)), flush=True)
            if "explorer" in which:
                print(explorer.markdown(await explorer.measure(s)), flush=True)
            if "campaign" in which:
                print(campaign.markdown(await campaign.measure(s)), flush=True)
            if "jetstream" in which:
                print(await jetstream.report(s), flush=True)
            elif "jsbus" in which:
                print(await jetstream.throughput_report(s), flush=True)
            if "history" in which:
                n, sizes, show_plans = history.options(argv)
                print(history.markdown(await history.run(s, n, sizes=sizes, show_plans=show_plans)), flush=True)
            if "ratelimit" in which:
                print(ratelimit.markdown(await ratelimit.measure(s)), flush=True)
            if "express" in which:
                print(express.markdown(await express.measure(s)), flush=True)

    if "research" in which:
        print(research.markdown(research.measure()), flush=True)
    if "codegen" in which:
        print(codegen.markdown(codegen.measure()), flush=True)
    if "codecs" in which:
        print(codecs.markdown(codecs.measure()), flush=True)


if __name__ == "__main__":
    argv = sys.argv[1:]
    sections = NEEDS_SERVERS | {"research", "codegen", "codecs"}
    if {"-h", "--help"} & set(argv):  # never start a bench when asked how to
        print(f"python -m bench [SECTION ...] [--flags of a section]\nsections: {', '.join(sorted(sections))}")
        sys.exit(0)
    chosen = {a for a in argv if not a.startswith("-") and not a.isdigit()} or sections
    if unknown := chosen - sections:
        print(f"bench: no section {', '.join(sorted(unknown))} (sections: {', '.join(sorted(sections))})")
        sys.exit(2)
    asyncio.run(main(chosen, argv))
