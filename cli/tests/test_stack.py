"""The local stack keeps its services running: one that dies is started again, with a
backoff, and the user is told (``alphasaga up``); start-up waits as long as services
make progress, and gives up naming the ones that make none. (That ``up`` prints a working
admin key for the api it starts: tests/test_api_stack.py, which runs on it.)"""

from __future__ import annotations

import signal
import stat
import threading
from pathlib import Path

import pytest

import alphasaga_api.settings
from alphasaga_cli.stack import WITH_API, Stack
from alphasaga_shared.config import Settings
from cli.tests.clirunner import alphasaga, assert_one_line_error


def test_a_service_that_dies_is_started_again_and_the_user_is_told(settings: Settings, tmp_path: Path) -> None:
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if line.startswith("ml restarted"):
            # To this thread, where it is blocked (another thread would die of it):
            # supervise() receives it on its next wait.
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    stack = Stack(settings.model_copy(update={"data_dir": tmp_path}), say=say, services=("ml",))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        stack.start()
        first = stack.processes["ml"]
        first.kill()
        assert stack.supervise({signal.SIGUSR1}) == signal.SIGUSR1
        assert "ml exited with code -9; restarting in 1 s (#1)" in said, said
        second = stack.processes["ml"]
        assert second is not first and second.poll() is None
    finally:
        stack.stop()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    assert second.poll() is not None, "stopped with the stack"


def test_a_start_that_makes_no_progress_gives_up_naming_the_services(env: dict[str, str]) -> None:
    impatient = {**env, "ALPHASAGA_START_TIMEOUT_S": "0.05"}
    result = alphasaga(impatient, "up", timeout=120)
    line = assert_one_line_error(result, contains="not ready after")
    assert "ALPHASAGA_START_TIMEOUT_S" in line and "orchestrator" in line


def test_up_gives_the_api_loopback_and_a_signing_key_of_its_data_directory(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alphasaga up` listens on 127.0.0.1 unless told otherwise, and signs with a random key
    kept in its data directory (0600), never with one from the source (issue #23)."""
    monkeypatch.delenv("ALPHASAGA_API_HOST", raising=False)
    monkeypatch.delenv("ALPHASAGA_API_SIGNING_KEY", raising=False)
    env = Stack(settings, services=WITH_API).env()
    assert env["ALPHASAGA_API_HOST"] == "127.0.0.1"
    key = env["ALPHASAGA_API_SIGNING_KEY"]
    assert len(key) >= 43 and key not in Path(alphasaga_api.settings.__file__).read_text()
    kept = settings.data_dir / "api-signing-key"
    assert kept.read_text().strip() == key and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert Stack(settings, services=WITH_API).env()["ALPHASAGA_API_SIGNING_KEY"] == key, "kept across restarts"
    other = settings.model_copy(update={"data_dir": tmp_path / "other"})
    assert Stack(other, services=WITH_API).env()["ALPHASAGA_API_SIGNING_KEY"] != key, "one per data directory"
    # Told otherwise: the operator's own choices win.
    monkeypatch.setenv("ALPHASAGA_API_HOST", "0.0.0.0")
    monkeypatch.setenv("ALPHASAGA_API_SIGNING_KEY", "s" * 40)
    env = Stack(settings, services=WITH_API).env()
    assert (env["ALPHASAGA_API_HOST"], env["ALPHASAGA_API_SIGNING_KEY"]) == ("0.0.0.0", "s" * 40)
