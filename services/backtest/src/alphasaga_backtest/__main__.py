"""``python -m alphasaga_backtest``: the backtest worker service."""

from __future__ import annotations

from alphasaga_contracts import Service
from alphasaga_shared.worker import run_worker

from .service import make_handlers


def main() -> None:
    run_worker(Service.BACKTEST, make_handlers)


if __name__ == "__main__":
    main()
