"""The relay alone, as ``python -m alphasaga_shared.outbox`` runs it, but exiting (as a
kill would) right after it published and before it saved its position: for the test
that the next relay publishes again and receivers drop the duplicate. Run as
``python -m tests.support.crashing_relay``."""

from __future__ import annotations

import os

from alphasaga_shared import outbox

if __name__ == "__main__":
    outbox.main(after_publish=lambda: os._exit(137))
