"""Applies the step-kind walkthrough of docs/extending.md to a process as if its code were
in the files it names: the contract in ``alphasaga_contracts.steps``, the domain code as
``alphasaga_backtest.domain.risk``, the handler in ``alphasaga_backtest.service``.

tests/test_extending.py writes the page's blocks to a folder (``contract.py`` and, for a
process that runs the handler, ``domain.py`` and ``service.py``) with a
``sitecustomize.py`` that calls ``apply``, and puts the folder first on ``PYTHONPATH``:
real orchestrator, worker and pytest processes then start with the new kind."""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

FOLDER = "ALPHASAGA_WALKTHROUGH"


def _run_in(module_name: str, source: Path) -> None:
    """Run ``source`` in the namespace of ``module_name``, as if appended to its file."""
    module = importlib.import_module(module_name)
    exec(compile(source.read_text(), str(source), "exec"), vars(module))  # the page's own code


def _new_module(module_name: str, source: Path) -> None:
    parent_name, _, child = module_name.rpartition(".")
    parent = importlib.import_module(parent_name)
    module = types.ModuleType(module_name)
    module.__file__ = str(source)
    module.__package__ = parent_name
    sys.modules[module_name] = module
    exec(compile(source.read_text(), str(source), "exec"), vars(module))  # the page's own code
    setattr(parent, child, module)


def apply() -> None:
    folder = os.environ.get(FOLDER)
    if not folder:
        return
    blocks = Path(folder)
    _run_in("alphasaga_contracts.steps", blocks / "contract.py")
    if (blocks / "domain.py").exists():
        _new_module("alphasaga_backtest.domain.risk", blocks / "domain.py")
    if (blocks / "service.py").exists():
        _run_in("alphasaga_backtest.service", blocks / "service.py")
