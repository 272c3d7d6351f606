"""``python -m alphasaga_orchestrator [PART]``: the saga orchestrator, with the outbox relay
and the saga-list projector inside it; or, with ``relay`` or ``projector``, that part
alone, as the production layout runs them (docs/decisions/0029; the orchestrator then
runs with ``ALPHASAGA_RUN_RELAY=false`` and ``ALPHASAGA_RUN_PROJECTOR=false``). One image
serves all three."""

from __future__ import annotations

import sys

from alphasaga_shared import outbox
from alphasaga_shared.runner import ServiceContext, run_service

from . import bootstrap, projection

PARTS = {"relay": outbox.main, "projector": projection.main}
USAGE = """usage: python -m alphasaga_orchestrator [relay | projector]

  (nothing)  the orchestrator, with the relay and the projector inside it unless
             ALPHASAGA_RUN_RELAY=false / ALPHASAGA_RUN_PROJECTOR=false
  relay      the outbox relay alone: sends committed commands to the streams
  projector  the saga-list projector alone: keeps the read model of `alphasaga list`

Settings come from ALPHASAGA_* variables (docs/deployment.md)."""


async def setup(ctx: ServiceContext) -> None:
    (await bootstrap.service(ctx)).attach(ctx)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        run_service("orchestrator", setup)
    elif args in (["-h"], ["--help"]):
        print(USAGE)
    elif len(args) == 1 and args[0] in PARTS:
        PARTS[args[0]]()
    else:
        print(f"{USAGE}\n\nerror: unexpected argument(s): {' '.join(args)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
