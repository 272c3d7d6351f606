"""What the command line keeps out of its process while it starts (docs/cli.md, "Import
discipline"): a command should pay for the modules it uses, not for what its libraries
could do."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

# redis-py (8.x) imports OpenTelemetry's metrics SDK whenever it is installed, for metrics
# of its own that stay off until ``get_observability_instance().init(...)`` is called
# (redis/redis-py#3954). Nothing here calls it, and the SDK (with psutil) was half of
# ``import redis``: the module that asks is told the SDK is absent, which it allows for.
_SDK = "opentelemetry.sdk.metrics"
_ASKER = "redis.observability.providers"


class _NoMetricsSdkForRedis(MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        asker = sys.modules.get(_ASKER)
        # Only while the asker runs its module body (it sets OTEL_AVAILABLE at its end): any
        # other importer, before or after, gets the SDK as usual.
        if fullname == _SDK and asker is not None and not hasattr(asker, "OTEL_AVAILABLE"):
            raise ModuleNotFoundError(f"{_SDK} is not loaded for redis-py in the command line", name=fullname)
        return None


def keep_lean() -> None:
    """Install the finder above, once, ahead of the others."""
    if not any(isinstance(f, _NoMetricsSdkForRedis) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoMetricsSdkForRedis())
