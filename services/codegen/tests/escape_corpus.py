"""The escape corpus: hostile snippets that try to reach the host, the other runs or the
look-ahead check from strategy code, and the host side that watches what reaches it.

Snippets are bodies of a function ``case(bars)``; ``TARGET`` is a world-writable host
directory, ``PORT`` a TCP listener on the host's loopback, ``UNIX`` a Unix socket,
``SECRET_FILE`` a world-readable host file holding ``SECRET_TEXT``. ``python
services/codegen/tests/escape_corpus.py`` prints what each layer did with each snippet:
the table in docs/security.md.
"""

from __future__ import annotations

import contextlib
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
    CodegenError,
    RuleViolation,
    Sandbox,
    SandboxKind,
    SandboxLimits,
    bubblewrap_available,
    namespaces_available,
    validate_strategy,
)

SECRET = "ALPHASAGA_ESCAPE_SECRET"
SECRET_TEXT = "AlphaSagaHostSecret"
# One snippet per run: each has the CPU of a job of its own, so a loop costs a second.
LIMITS = SandboxLimits(cpu_seconds=1, memory_bytes=768 << 20, wall_seconds=30.0, disk_bytes=8 << 20)

FIFO_THREAD = """import os
import threading
import time


def replace_with_fifos():
    for _ in range(200):
        for name in ("status.json", "result.parquet", "stderr.txt", "../status.json"):
            try:
                if os.path.exists(name):
                    os.unlink(name)
                os.mkfifo(name)
            except OSError:
                pass
        time.sleep(0.01)


threading.Thread(target=replace_with_fifos).start()
time.sleep(0.02)
return sorted(os.listdir("."))"""

DISK_FILL = """written = 0
chunk = b"x" * (1 << 21)
for i in range(256):
    try:
        with open(f"fill-{i}", "wb") as out:
            out.write(chunk)
    except OSError as exc:
        return f"{written} bytes, then {exc}"
    written += len(chunk)
return f"{written} bytes"
"""

# (id, category, body)
CORPUS: list[tuple[str, str, str]] = [
    ("issue_repro", "reproduction", 'return float(pd.util._print_versions.os.system(f"id > {TARGET}/issue_repro"))'),
    ("builtins_open", "reproduction", 'return pd.core.common.builtins.open(f"{TARGET}/builtins_open", "w").write("x")'),
    ("builtins_exec", "reproduction", "pd.core.common.builtins.exec(f\"open({TARGET!r} + '/builtins_exec', 'w')\")"),
    (
        "eval_dispatch",
        "name dispatch",
        'n = "eval"\n'
        'return bars.agg(n, 0, "@p.io.common.os.system(@c)",'
        ' local_dict={"p": pd, "c": f"touch {TARGET}/eval_dispatch"})',
    ),
    (
        "query_dispatch",
        "name dispatch",
        'n = "que" + "ry"\nreturn bars.agg(n, 0, "@p.io.common.os.system(@c) == 0",'
        ' local_dict={"p": pd, "c": f"touch {TARGET}/query_dispatch"})',
    ),
    ("to_csv_dispatch", "name dispatch", 'n = "to_" + "csv"\nreturn bars.agg(n, 0, f"{TARGET}/to_csv_dispatch")'),
    (
        "to_pickle_dispatch",
        "name dispatch",
        'n = "to_" + "pickle"\nreturn bars.transform(n, 0, f"{TARGET}/to_pickle_dispatch")',
    ),
    (
        "pipe_dispatch",
        "name dispatch",
        'n = "pi" + "pe"\nreturn bars.agg(n, 0, lambda b: pd.io.common.os.system(f"touch {TARGET}/pipe_dispatch"))',
    ),
    ("dunder_dispatch", "name dispatch", 'u = "x_"[1] * 2\nreturn bars.agg(u + "class" + u).shape'),
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
    ("disk_fill", "disk fill", DISK_FILL),
    ("read_passwd", "host files", "return open('/etc/passwd').read()[:200]"),
    ("read_host_file", "host files", "return open(SECRET_FILE).read()"),
    ("read_csv_passwd", "host files", 'return pd.read_csv("/etc/passwd", sep=":", header=None).shape'),
    (
        "bars_file",
        "look-ahead",
        "import glob\n"
        "found = []\n"
        "for pattern in ('*', '../*', '/sandbox/*', '/proc/1/cwd/*', '/tmp/*', '/proc/*/cwd/*'):\n"
        "    found += glob.glob(pattern)\n"
        "return sorted(found)",
    ),
    (
        "patch_runner",
        "runner",
        "import sys\nrunner = sys.modules['__main__']\n"
        "runner.checked_signal = lambda signal, index: signal.to_numpy()\n"
        "runner.checked_features = lambda features, index: features\n"
        "return sorted(name for name in vars(runner) if name.startswith('check'))",
    ),
    ("fifo_status", "runner", FIFO_THREAD),
    (
        "forge_output",
        "runner",
        "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'ASF1' + b'\\xff' * 64)\n"
        "    except OSError:\n        pass\nos._exit(0)",
    ),
    ("see_processes", "runner", "import os\nreturn sorted(os.listdir('/proc'))[:12]"),
    (
        "kill_zygote",
        "runner",
        "import os\nhit = []\nfor pid in range(2, 64):\n    try:\n        os.kill(pid, 9)\n        hit.append(pid)\n"
        "    except OSError:\n        pass\nreturn hit",
    ),
    ("shm_stash", "state between runs", "return open('/dev/shm/alphasaga-stash', 'w').write('x')"),
]


def strategy_module(
    body: str, target: str = "/tmp/t", port: int = 9, unix: str = "/tmp/t/u.sock", secret_file: str = "/tmp/t/s"
) -> str:
    """A complete strategy whose helper ``case`` runs ``body``; its features end the run
    with what ``case`` returned (the only thing a failed run hands back is its message)."""
    return (
        "import numpy as np\nimport pandas as pd\n\n"
        f"TARGET = {target!r}\nPORT = {port}\nUNIX = {unix!r}\nSECRET_FILE = {secret_file!r}\n\n\n"
        f"def case(bars):\n{textwrap.indent(body, '    ')}\n\n\n"
        "def compute_features(bars):\n    result = case(bars)\n"
        "    raise RuntimeError('ran: ' + repr(result)[:300])\n\n\n"
        "def compute_signal(bars, features):\n    return pd.Series(0.0, index=bars.index)\n"
    )


def corpus_bars(rows: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {"close": np.linspace(100.0, 110.0, rows)}, index=pd.bdate_range("2020-01-01", periods=rows, name="date")
    )


def chain_bars(rows: int = 60) -> pd.DataFrame:
    """A seeded random walk with OHLCV: rises and falls for a peek to be seen."""
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(24).normal(0.0, 0.01, rows)))
    return pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6},
        index=pd.bdate_range("2020-01-01", periods=rows, name="date"),
    )


@dataclass
class Host:
    """What a snippet could reach on the host, and what reached it."""

    target: Path
    port: int
    unix: str
    secret_file: str
    arrived: list[str]

    def module(self, body: str) -> str:
        return strategy_module(body, str(self.target), self.port, self.unix, self.secret_file)

    def written(self) -> list[str]:
        """Files the snippets made on the host (none may appear)."""
        planted = ("payload.pkl", "u.sock", Path(self.secret_file).name)
        found = sorted(p.name for p in self.target.iterdir() if p.name not in planted)
        if Path("/tmp/alphasaga-escape-write_tmp").exists():
            found.append("/tmp/alphasaga-escape-write_tmp")
        return found


@contextlib.contextmanager
def host() -> Iterator[Host]:
    with tempfile.TemporaryDirectory(prefix="alphasaga-escape-") as tmp:
        target = Path(tmp)
        target.chmod(0o777)  # writable by anyone: only the sandbox may stop a write
        (target / "payload.pkl").write_bytes(b"cposix\nsystem\n(S'touch " + tmp.encode() + b"/read_pickle'\ntR.")
        secret_file = target / "secret.txt"
        secret_file.write_text(SECRET_TEXT)
        secret_file.chmod(0o644)  # world-readable, as /etc/passwd is
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
            yield Host(target, tcp.getsockname()[1], unix_path, str(secret_file), arrived)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            tcp.close()
            unix.close()


_NO_NAMESPACES = pytest.mark.skipif(not namespaces_available(), reason="no namespaces here")
# (kind, as a service that is not root would run it)
FLAVOURS = [
    pytest.param(("bubblewrap", False), marks=pytest.mark.skipif(not bubblewrap_available(), reason="no bubblewrap")),
    pytest.param(("namespaces", False), marks=_NO_NAMESPACES, id="namespaces"),
    # The fallback as a service that is not root runs it: in a user namespace, without
    # capabilities instead of as another uid.
    pytest.param(("namespaces", True), marks=_NO_NAMESPACES, id="namespaces-user-namespace"),
]


@contextlib.contextmanager
def confined(kind: SandboxKind, not_root: bool, limits: SandboxLimits) -> Iterator[tuple[Sandbox, Host]]:
    """A sandbox of ``kind`` kept for a test module, and the host it must not reach."""
    with pytest.MonkeyPatch.context() as patch, host() as place:
        patch.setenv(SECRET, "hunter2")  # the service's environment: no run may see it
        if not_root:
            patch.setattr(os, "geteuid", lambda: 1000)
        sandbox = Sandbox(kind, limits)
        try:
            yield sandbox, place
        finally:
            sandbox.close()


def outcome(sandbox: Sandbox, place: Host, body: str) -> str:
    """One snippet in one run of ``sandbox``, the checker off: how the run ended."""
    try:
        sandbox.run(place.module(body), [("on all bars", corpus_bars())], validate=False)
    except CodegenError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "returned"


# What a run of these snippets shows, when it ran to its end.
RAN = {
    "bars_file": "ran: the system's directories and an empty work directory; no bars anywhere",
    "patch_runner": "ran: patched its own copy of the runner; the service checks again (the chains)",
    "fifo_status": "ran: FIFOs in its own tmpfs, a thread that died with it; the service reads no file",
    "see_processes": "ran: sees itself alone, as pid 1",
    "kill_zygote": "ran: no other process to signal",
}
SUMMARIES = (
    ("32512", "ran; its shell never started (spawn refused: exit status 127)"),
    ("KeyError: 'False", "ran; its shell never started (status not 0: query kept no row)"),
    ("No space left on device", "ENOSPC: the work directory's tmpfs is full"),
    ("Read-only file system", "EROFS: read-only"),
    ("No such file or directory", "ENOENT: the host path is not there"),
    ("non-existent directory", "ENOENT: the host path is not there"),
    ("Operation not permitted", "EPERM (seccomp)"),
    ("memory limit", "MemoryError (address-space limit)"),
    ("cpu_time", "stopped at the CPU limit"),
    ("RecursionError", "RecursionError"),
    ("UnreadableOutput", "the service refused what it handed back (invalid_input)"),
    ("ran: None", "ran: the variable is not there"),
    ("ran: []", "ran: found nothing"),
)


def summary(case: str, text: str) -> str:
    """What a snippet's outcome means, in a few words."""
    if case in RAN and "ran: " in text:
        return RAN[case]
    for needle, meaning in SUMMARIES:
        if needle in text:
            return meaning
    shown = text.split("ran: ", 1)[-1].split(" (on all bars)")[0][:40].replace("|", "/").replace("\n", " ")
    return "ran, harmless: " + shown


def table() -> str:
    """Markdown: what each layer did with each snippet (for docs/security.md)."""
    os.environ[SECRET] = "hunter2"
    kinds: tuple[SandboxKind, ...] = ("bubblewrap", "namespaces")
    rows = ["| snippet | category | checker | bubblewrap | namespaces |", "|---|---|---|---|---|"]
    layers: dict[str, dict[str, str]] = {}
    for kind in kinds:
        sandbox = Sandbox(kind, LIMITS)
        with host() as place:
            layers[kind] = {case: outcome(sandbox, place, body) for case, _, body in CORPUS}
            layers[kind]["(escaped)"] = ", ".join([*place.written(), *place.arrived]) or "none"
        sandbox.close()
    for case, category, body in CORPUS:
        try:
            validate_strategy(strategy_module(body))
            checker = "PASSED"
        except RuleViolation as exc:
            checker = f"`{exc.rule}`"
        cells = [summary(case, layers[kind][case]) for kind in kinds]
        rows.append(f"| `{case}` | {category} | {checker} | {cells[0]} | {cells[1]} |")
    rows.append(f"| (host side) | | | {layers['bubblewrap']['(escaped)']} | {layers['namespaces']['(escaped)']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
