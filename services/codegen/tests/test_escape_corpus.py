"""The escape corpus: hostile snippets that try to reach the host from strategy code.

Layer 1, the checker, must refuse every one (one parametrised case each). Layers 2 and
3 run the whole corpus with the checker switched off inside each sandbox, one process
per sandbox: nothing may be written outside the work directory, no connection may reach
the listeners the test opens on the host, and no host environment variable may be
read. ``python services/codegen/tests/test_escape_corpus.py`` prints what each layer
did with each snippet, the table in docs/security.md.

Snippets are bodies of a function ``case(bars)``; ``TARGET`` is a world-writable host
directory, ``PORT`` a TCP listener on the host's loopback, ``UNIX`` a Unix socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from alphasaga_codegen.domain import (
    RuleViolation,
    SandboxLimits,
    SandboxMode,
    bubblewrap_available,
    namespaces_available,
    run_strategy,
    validate_strategy,
)

SECRET = "ALPHASAGA_ESCAPE_SECRET"

# (id, category, body)
CORPUS: list[tuple[str, str, str]] = [
    ("issue_repro", "reproduction", 'return float(pd.util._print_versions.os.system(f"id > {TARGET}/issue_repro"))'),
    ("builtins_open", "reproduction", 'return pd.core.common.builtins.open(f"{TARGET}/builtins_open", "w").write("x")'),
    ("builtins_exec", "reproduction", "pd.core.common.builtins.exec(f\"open({TARGET!r} + '/builtins_exec', 'w')\")"),
    ("io_common_os", "library internals", 'return pd.io.common.os.system(f"touch {TARGET}/io_common_os")'),
    ("npyio_os", "library internals", 'return np.lib._npyio_impl.os.system(f"touch {TARGET}/npyio_os")'),
    ("to_csv", "library internals", 'bars.to_csv(f"{TARGET}/to_csv")'),
    ("np_save", "library internals", 'np.save(f"{TARGET}/np_save.npy", bars["close"].to_numpy())'),
    ("urlopen", "library internals", 'return pd.io.common.urlopen(f"http://127.0.0.1:{PORT}/urlopen").read()'),
    (
        "subclasses_walk",
        "type walk",
        "for c in ().__class__.__base__.__subclasses__():\n"
        "    if c.__name__ == '_wrap_close':\n"
        "        return c.__init__.__globals__['system'](f'touch {TARGET}/subclasses_walk')",
    ),
    (
        "type_mro",
        "type walk",
        "klass = type(bars).__mro__[-1]\n"
        "loader = [c for c in klass.__subclasses__() if c.__name__ == 'BuiltinImporter'][0]\n"
        "return loader.load_module('posix').system(f'touch {TARGET}/type_mro')",
    ),
    (
        "decorator",
        "decorator",
        "@(lambda f: f())\ndef run():\n    return open(f'{TARGET}/decorator', 'w').write('x')\nreturn run",
    ),
    ("fstring_call", "f-string", "return f\"{pd.util._print_versions.os.system(f'touch {TARGET}/fstring_call')}\""),
    ("format_walk", "f-string", 'return "{0.__class__.__mro__}".format(bars)'),
    ("import_dunder", "__import__ alias", "return __import__('o' + 's').system(f'touch {TARGET}/import_dunder')"),
    (
        "builtins_dict",
        "__import__ alias",
        "imp = __builtins__['__import__'] if isinstance(__builtins__, dict) else __builtins__.__import__\n"
        "return imp('os').system(f'touch {TARGET}/builtins_dict')",
    ),
    ("globals_import", "__import__ alias", "return globals()['__builtins__']"),
    (
        "importlib_alias",
        "__import__ alias",
        "from importlib import import_module as load\nreturn load('os').system(f'touch {TARGET}/importlib_alias')",
    ),
    ("getattr_chain", "__import__ alias", "return getattr(getattr(pd, 'io'), 'common').os.system('id')"),
    ("unicode_eval", "__import__ alias", "return \uff45val(\"__import__('os').system('id')\")"),
    ("vars_module", "__import__ alias", "return vars(pd.io.common)['os'].system(f'touch {TARGET}/vars_module')"),
    (
        "ctypes_system",
        "numpy ctypes",
        "return np.ctypeslib.ctypes.CDLL(None).system(f'touch {TARGET}/ctypes_system'.encode())",
    ),
    ("array_ctypes", "numpy ctypes", 'return bars["close"].to_numpy().ctypes.data'),
    (
        "pickle_loads",
        "pickle",
        "import pickle\n"
        'return pickle.loads(b"cposix\\nsystem\\n(S\'touch " + TARGET.encode() + b"/pickle_loads\'\\ntR.")',
    ),
    ("read_pickle", "pickle", 'return pd.read_pickle(f"{TARGET}/payload.pkl")'),
    ("pickle_compat", "pickle", "return pd.compat.pickle_compat.pickle.dumps(bars)"),
    ("environ_import", "os.environ", f"import os\nreturn dict(os.environ).get({SECRET!r})"),
    ("environ_chain", "os.environ", f"return pd.io.common.os.environ.get({SECRET!r})"),
    ("huge_ones", "huge allocation", "return np.ones(10**11)"),
    ("huge_string", "huge allocation", "return 'x' * (1 << 40)"),
    (
        "fork_loop",
        "fork bomb",
        "import os\npids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
        "        os._exit(0)\n    pids.append(pid)\nreturn pids",
    ),
    (
        "subprocess",
        "fork bomb",
        "import subprocess\nreturn subprocess.run(['touch', f'{TARGET}/subprocess']).returncode",
    ),
    ("while_true", "infinite loop", "while True:\n    pass"),
    ("recursion", "infinite loop", "def grow(n):\n    return grow(n + 1) + grow(n + 1)\nreturn grow(0)"),
    ("huge_range", "infinite loop", "for _ in range(10**12):\n    pass"),
    (
        "socket_tcp",
        "network",
        "import socket\nreturn socket.create_connection(('127.0.0.1', PORT), timeout=1).send(b'socket_tcp')",
    ),
    (
        "socket_unix",
        "network",
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect(UNIX)\nreturn s.send(b'socket_unix')",
    ),
    ("write_tmp", "file write", "return open('/tmp/alphasaga-escape-write_tmp', 'w').write('x')"),
    ("write_parent", "file write", "return open('../write_parent', 'w').write('x')"),
]


def strategy_module(body: str, target: str = "/tmp/t", port: int = 9, unix: str = "/tmp/t/u.sock") -> str:
    """A complete strategy whose helper ``case`` runs ``body``."""
    return (
        "import numpy as np\nimport pandas as pd\n\n"
        f"TARGET = {target!r}\nPORT = {port}\nUNIX = {unix!r}\n\n\n"
        f"def case(bars):\n{textwrap.indent(body, '    ')}\n\n\n"
        "def compute_features(bars):\n    case(bars)\n    return pd.DataFrame(index=bars.index)\n\n\n"
        "def compute_signal(bars, features):\n    return pd.Series(0.0, index=bars.index)\n"
    )


def test_the_corpus_covers_every_category_of_the_issue() -> None:
    assert len(CORPUS) >= 30
    assert len({case for case, _, _ in CORPUS}) == len(CORPUS)
    categories = {category for _, category, _ in CORPUS}
    assert {
        "reproduction", "library internals", "type walk", "decorator", "f-string", "__import__ alias",
        "numpy ctypes", "pickle", "os.environ", "huge allocation", "fork bomb", "infinite loop",
    } <= categories  # fmt: skip


@pytest.mark.parametrize(("case", "body"), [(case, body) for case, _, body in CORPUS], ids=[c for c, _, _ in CORPUS])
def test_the_checker_refuses(case: str, body: str) -> None:
    with pytest.raises(RuleViolation):
        validate_strategy(strategy_module(body))


# --------------------------------------------------------------------------- the sandboxes

HARNESS = """
import json
import signal

import pandas as pd

CASES = {cases}


def _stop(signum, frame):
    raise TimeoutError("stopped by the harness after 1 s")


def compute_features(bars):
    signal.signal(signal.SIGALRM, _stop)
    outcome = {{}}
    for name, case in CASES:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        try:
            outcome[name] = "ran: " + repr(case(bars.copy()))[:200]
        except BaseException as exc:
            outcome[name] = f"{{type(exc).__name__}}: {{exc}}"[:200]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    columns = {{json.dumps([name, text]): 0.0 for name, text in outcome.items()}}
    return pd.DataFrame(columns, index=bars.index)


def compute_signal(bars, features):
    return pd.Series(0.0, index=bars.index)
"""


def harness(target: str, port: int, unix: str) -> str:
    """One module running every snippet, each stopped after a second, outcomes in the
    feature names (the only thing a run hands back)."""
    parts = ["import numpy as np\nimport pandas as pd\n", f"TARGET = {target!r}\nPORT = {port}\nUNIX = {unix!r}\n"]
    for case, _, body in CORPUS:
        parts.append(f"def case_{case}(bars):\n{textwrap.indent(body, '    ')}\n")
    cases = "[" + ", ".join(f"({case!r}, case_{case})" for case, _, _ in CORPUS) + "]"
    return "\n\n".join(parts) + HARNESS.format(cases=cases)


@dataclass
class Host:
    """What a snippet could reach on the host, and what reached it."""

    target: Path
    port: int
    unix: str
    arrived: list[str]


@contextlib.contextmanager
def host() -> Iterator[Host]:
    with tempfile.TemporaryDirectory(prefix="alphasaga-escape-") as tmp:
        target = Path(tmp)
        target.chmod(0o777)  # writable by anyone: only the sandbox may stop a write
        (target / "payload.pkl").write_bytes(b"cposix\nsystem\n(S'touch " + tmp.encode() + b"/read_pickle'\ntR.")
        tcp = socket.create_server(("127.0.0.1", 0))
        unix_path = str(target / "u.sock")
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(unix_path)
        Path(unix_path).chmod(0o777)
        unix.listen()
        arrived: list[str] = []
        stop = threading.Event()

        def accept(server: socket.socket, label: str) -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    connection, _ = server.accept()
                    arrived.append(label)
                    connection.close()

        threads = [threading.Thread(target=accept, args=(s, n)) for s, n in ((tcp, "tcp"), (unix, "unix"))]
        for thread in threads:
            thread.start()
        try:
            yield Host(target, tcp.getsockname()[1], unix_path, arrived)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            tcp.close()
            unix.close()


def run_corpus(mode: SandboxMode, place: Host) -> dict[str, str]:
    """Every snippet in one sandboxed process, the checker off; outcome per snippet."""
    bars = pd.DataFrame(
        {"close": np.linspace(100.0, 110.0, 20)}, index=pd.bdate_range("2020-01-01", periods=20, name="date")
    )
    source = harness(str(place.target), place.port, place.unix)
    limits = SandboxLimits(cpu_seconds=60, memory_bytes=768 << 20, wall_seconds=90.0)
    result = run_strategy(source, bars, limits=limits, mode=mode, validate=False)
    pairs = [json.loads(column) for column in result.frame.columns if column != "signal"]
    return {name: text for name, text in pairs}


def written_outside(place: Host) -> list[str]:
    found = sorted(p.name for p in place.target.iterdir() if p.name not in ("payload.pkl", "u.sock"))
    if Path("/tmp/alphasaga-escape-write_tmp").exists():
        found.append("/tmp/alphasaga-escape-write_tmp")
    return found


no_namespaces = pytest.mark.skipif(not namespaces_available(), reason="no namespaces here")
SANDBOXES = [
    pytest.param("bubblewrap", False, marks=pytest.mark.skipif(not bubblewrap_available(), reason="no bubblewrap")),
    pytest.param("namespaces", False, marks=no_namespaces),
    # The fallback as a service that is not root runs it: in a user namespace, without
    # capabilities instead of as another uid.
    pytest.param("namespaces", True, marks=no_namespaces, id="namespaces-user-namespace"),
]


@pytest.mark.parametrize(("mode", "not_root"), SANDBOXES)
def test_with_the_checker_off_the_sandbox_stops_every_write_and_connection(
    mode: SandboxMode, not_root: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET, "hunter2")
    if not_root:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with host() as place:
        outcomes = run_corpus(mode, place)
        assert set(outcomes) == {case for case, _, _ in CORPUS}
        assert written_outside(place) == []
        assert place.arrived == []
    assert not any("hunter2" in text for text in outcomes.values())
    # The snippets did run: the harness saw each one end, and the writes were tried.
    assert outcomes["while_true"].startswith("TimeoutError")
    assert outcomes["huge_ones"].startswith("MemoryError")
    assert not outcomes["write_tmp"].startswith("ran")
    assert not outcomes["write_parent"].startswith("ran")


SUMMARIES = (
    ("32512", "ran; its shell never started (spawn refused: exit status 127)"),
    ("Read-only file system", "EROFS: read-only"),
    ("No such file or directory", "ENOENT: the host path is not there"),
    ("non-existent directory", "ENOENT: the host path is not there"),
    ("Operation not permitted", "EPERM (seccomp)"),
    ("MemoryError", "MemoryError (address-space limit)"),
    ("TimeoutError", "still running after 1 s (the CPU limit ends it)"),
    ("RecursionError", "RecursionError"),
    ("No module named", "cannot import (unreadable to the unprivileged uid)"),
    ("ran: None", "ran: the variable is not there"),
)


def summary(text: str) -> str:
    """What a snippet's outcome means, in a few words."""
    for needle, meaning in SUMMARIES:
        if needle in text:
            return meaning
    return "ran, harmless: " + text.removeprefix("ran: ")[:40].replace("|", "/").replace("\n", " ")


def table() -> str:
    """Markdown: what each layer did with each snippet (for docs/security.md)."""
    os.environ[SECRET] = "hunter2"
    rows = ["| snippet | category | checker | bubblewrap | namespaces |", "|---|---|---|---|---|"]
    layers = {}
    for mode in ("bubblewrap", "namespaces"):
        with host() as place:
            layers[mode] = run_corpus(mode, place)  # type: ignore[arg-type]
            layers[mode]["(escaped)"] = ", ".join([*written_outside(place), *place.arrived]) or "none"
    for case, category, body in CORPUS:
        try:
            validate_strategy(strategy_module(body))
            checker = "PASSED"
        except RuleViolation as exc:
            checker = f"`{exc.rule}`"
        cells = [summary(layers[m][case]) for m in ("bubblewrap", "namespaces")]
        rows.append(f"| `{case}` | {category} | {checker} | {cells[0]} | {cells[1]} |")
    rows.append(f"| (host side) | | | {layers['bubblewrap']['(escaped)']} | {layers['namespaces']['(escaped)']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
