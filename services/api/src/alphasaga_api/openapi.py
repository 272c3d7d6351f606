"""The committed OpenAPI document (``services/api/openapi.json``): ``python -m
alphasaga_api.openapi`` writes it from the code; a test fails when the two differ."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from alphasaga_shared.config import Settings

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.json"


def document() -> dict[str, Any]:
    from .app import create_app
    from .settings import ApiSettings

    # Settings of the document only: nothing is connected, and nothing is signed, to build it.
    unused_key = SecretStr(secrets.token_urlsafe(32))
    app = create_app(Settings(env="development"), ApiSettings(signing_key=unused_key), with_mcp=False)
    return app.openapi()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    COMMITTED.write_text(render())
    print(f"wrote {COMMITTED}", file=sys.stderr)


if __name__ == "__main__":
    main()
