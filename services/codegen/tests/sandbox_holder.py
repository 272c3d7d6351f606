"""A process that runs a strategy in a sandbox of the kind given (argv[1]) whose features
sleep for ten minutes, prints ``holding`` once the runner is at work, and waits: the
test kills it with -9 and checks that the runner died with it (its wall-clock limit is
enforced by this process, so it would not stop on its own)."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from alphasaga_codegen.domain import SandboxLimits
from alphasaga_codegen.domain.sandbox import Sandbox

SLEEPER = (
    "import time\n\nimport pandas as pd\n\n\n"
    "def compute_features(bars):\n    time.sleep(600)\n    return pd.DataFrame(index=bars.index)\n\n\n"
    "def compute_signal(bars, features):\n    return pd.Series(0.0, index=bars.index)\n"
)

if __name__ == "__main__":
    index = pd.bdate_range("2015-01-02", periods=300, name="date")
    close = 100.0 + np.arange(300.0)
    bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": close}, index=index)
    limits = SandboxLimits(cpu_seconds=600, memory_bytes=1 << 30, wall_seconds=900)
    sandbox = Sandbox(sys.argv[1], limits, ahead=False)  # type: ignore[arg-type]
    job = (SLEEPER, [("on all bars", bars)])
    threading.Thread(target=sandbox.run, args=job, kwargs={"validate": False}, daemon=True).start()
    time.sleep(5)  # the zygote has started, and its run is asleep in compute_features
    print("holding", flush=True)
    time.sleep(3600)
