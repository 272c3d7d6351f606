"""A research request from flags or a JSON/YAML file, validated against the contract
before anything is published."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CliError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from alphasaga_contracts.research import ResearchRequest


def validation_summary(exc: ValidationError, limit: int = 5) -> str:
    parts: list[str] = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "request"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def read_document(path: Path) -> Any:
    """JSON or YAML (YAML also reads JSON); ``-`` reads stdin."""
    import yaml

    try:
        text = Path("/dev/stdin").read_text() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CliError(f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None


def load_request(path: Path | None, overrides: dict[str, Any]) -> tuple[ResearchRequest, str | None]:
    """The request from ``path`` (a request, or ``{"request": …, "workflow": …}``) with the
    flags that were given on top; returns it with the workflow the file names, if any."""
    from pydantic import ValidationError

    from alphasaga_contracts.research import ResearchRequest

    fields: dict[str, Any] = {}
    workflow: str | None = None
    where = "request"
    if path is not None:
        where = f"request in {path}"
        doc = read_document(path)
        if not isinstance(doc, dict):
            raise CliError(f"{path} must hold a mapping (the request's fields), not {type(doc).__name__}")
        if isinstance(doc.get("request"), dict):
            workflow = doc.get("workflow")
            doc = doc["request"]
        fields.update(doc)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "data_path" in given:
        fields.pop("dataset", None)
    if "dataset" in given:
        fields.pop("data_path", None)
    for key in ("max_drawdown", "min_sharpe"):
        if key in given:
            base = fields.get("constraints")
            fields["constraints"] = {**(base if isinstance(base, dict) else {}), key: given.pop(key)}
    fields.update(given)
    if path is None and "dataset" not in fields and "data_path" not in fields:
        fields["dataset"] = "sp500"
    try:
        return ResearchRequest.model_validate(fields), workflow
    except ValidationError as exc:
        raise CliError(f"invalid {where}: {validation_summary(exc)}") from None
