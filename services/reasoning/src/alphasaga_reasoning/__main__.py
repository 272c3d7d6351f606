"""``python -m alphasaga_reasoning``: forms hypotheses from measured properties of the data."""

from __future__ import annotations

from alphasaga_contracts import Service
from alphasaga_shared.worker import run_worker

from .service import make_handlers


def main() -> None:
    run_worker(Service.REASONING, make_handlers)


if __name__ == "__main__":
    main()
