"""The local stack keeps its services running: one that dies is started again, with a
backoff, and the user is told (``alphasaga up``); start-up waits as long as services
make progress, and gives up naming the ones that make none. (That ``up`` prints a working
admin key for the api it starts: tests/test_api_stack.py, which runs on it.)"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from alphasaga_cli.stack import Stack
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
