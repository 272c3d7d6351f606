"""Layers 2 and 3 on the escape corpus: every snippet with the checker off, one run each
(a process of its own, forked fresh by the zygote) in each sandbox. Nothing may be
written outside the run's work directory, no connection may reach the listeners on the
host, no host file or environment variable may be read, and each snippet ends the way
its layer says it must."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from alphasaga_codegen.domain import Sandbox
from services.codegen.tests.escape_corpus import CORPUS, FLAVOURS, LIMITS, SECRET_TEXT, Host, confined, outcome


def _ran(text: str) -> bool:
    return "RuntimeError: ran: " in text


def _returned(text: str) -> str:
    """What the snippet returned, as its run's message shows it (not the traceback)."""
    return text.split("ran: ", 1)[-1].splitlines()[0]


def _disk_stopped(text: str) -> bool:
    found = re.search(r"ran: '(\d+) bytes, then .*No space left on device", text)
    return found is not None and int(found.group(1)) <= LIMITS.disk_bytes


# How each snippet must end, where that says something about a layer.
EXPECTED: dict[str, Callable[[str], bool]] = {
    "while_true": lambda text: "cpu_time" in text,
    "huge_range": lambda text: "cpu_time" in text,
    "huge_ones": lambda text: "memory" in text,
    "huge_string": lambda text: "memory" in text,
    "write_tmp": lambda text: not _ran(text),
    "write_parent": lambda text: not _ran(text),
    "shm_stash": lambda text: not _ran(text),
    "disk_fill": _disk_stopped,
    "read_passwd": lambda text: "No such file or directory" in text,
    "read_host_file": lambda text: "No such file or directory" in text,
    "read_csv_passwd": lambda text: "No such file or directory" in text,
    # Nothing but the run's own, empty, work directory and the system's directories.
    "bars_file": lambda text: _ran(text) and not re.search(r"parquet|request\.json|runner\.py|/box", _returned(text)),
    "fifo_status": _ran,
    "patch_runner": _ran,
    "forge_output": lambda text: text.startswith("UnreadableOutput"),
    # The run is the only process it can see: the init of its own PID namespace.
    "see_processes": lambda text: _ran(text) and re.findall(r"'(\d+)'", _returned(text)) == ["1"],
    "kill_zygote": lambda text: "ran: []" in text,
}


@pytest.fixture(scope="module", params=FLAVOURS)
def sandbox_and_host(request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, Host]]:
    with confined(*request.param, LIMITS) as kept:
        yield kept


def test_the_expectations_name_real_snippets() -> None:
    assert set(EXPECTED) <= {case for case, _, _ in CORPUS}


@pytest.mark.parametrize(("case", "body"), [(case, body) for case, _, body in CORPUS], ids=[c for c, _, _ in CORPUS])
def test_with_the_checker_off_each_snippet_is_contained(
    sandbox_and_host: tuple[Sandbox, Host], case: str, body: str
) -> None:
    sandbox, place = sandbox_and_host
    text = outcome(sandbox, place, body)
    assert place.written() == []
    assert place.arrived == []
    assert "hunter2" not in text and SECRET_TEXT not in text
    if case in EXPECTED:
        assert EXPECTED[case](text), text
