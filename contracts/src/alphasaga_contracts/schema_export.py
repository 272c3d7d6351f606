"""Export every contract's JSON Schema to ``contracts/schemas/`` (``make schemas``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from . import registered_types

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, one per message type."""
    docs: dict[str, dict[str, Any]] = {}
    for type_name, cls in registered_types().items():
        schema = cls.model_json_schema()
        schema["$id"] = f"alphasaga:{type_name}:v{cls.SCHEMA_VERSION}"
        schema["x-message-type"] = type_name
        schema["x-schema-version"] = cls.SCHEMA_VERSION
        docs[f"{type_name}.v{cls.SCHEMA_VERSION}.json"] = schema
    return docs


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    wanted = schema_documents()
    for stale in set(p.name for p in SCHEMA_DIR.glob("*.json")) - wanted.keys():
        (SCHEMA_DIR / stale).unlink()
    for name, schema in wanted.items():
        (SCHEMA_DIR / name).write_text(render(schema))
    print(f"wrote {len(wanted)} schemas to {SCHEMA_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
