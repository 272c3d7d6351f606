"""``python -m alphasaga_codegen``: renders, validates and sandboxes strategy code."""

from __future__ import annotations

from alphasaga_contracts import Service
from alphasaga_shared.worker import run_worker

from .service import make_handlers


def main() -> None:
    run_worker(Service.CODEGEN, make_handlers)


if __name__ == "__main__":
    main()
