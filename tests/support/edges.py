"""Research requests made from the contract's own JSON Schema: for every field, the values
at and just past its bounds, the values JSON and Python disagree on (Infinity, NaN, huge
integers, NUL, lone surrogates), and valid values drawn within the bounds. The edge tests
and the property tests of the API and of the command stream all draw from here, so that
the schema, not a hand-made list, says what the fields are."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphasaga_contracts.research import BUILTIN_DATASETS
from alphasaga_contracts.schema_export import SCHEMA_DIR
from alphasaga_shared.wire import MalformedMessage, decode

START = json.loads((SCHEMA_DIR / "orchestrator.StartResearch.v1.json").read_text())
DEFS: dict[str, Any] = START["$defs"]
REQUEST: dict[str, Any] = DEFS["ResearchRequest"]

JSON = {"content-type": "application/json"}
HUGE_INT = 10**40
TEXT_EDGES = ["", "\x00", "a\x00b", "\ud800", "x" * 5000, "../../etc/passwd", "é", 42, True]
NUMBER_EDGES = [0, -0.0, 5e-324, 1e308, -1e308, float("inf"), float("-inf"), float("nan"), HUGE_INT, "1", True]
INTEGER_EDGES = [0, -1, 1.0, 1.5, 2**31, 2**63, HUGE_INT, -HUGE_INT, "7", True, float("inf")]
DATE_EDGES = ["0001-01-01", "1899-12-31", "9999-12-31", "2018-02-30", "not a date", "2015-01-01T00:00:00", 20150101]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return {**DEFS[ref.rsplit("/", 1)[-1]], **{k: v for k, v in schema.items() if k != "$ref"}} if ref else schema


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a field (``anyOf: [X, null]`` is X, nullable)."""
    return [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]


def leaf_fields() -> dict[str, dict[str, Any]]:
    """Every scalar field of the request by its dotted path (``constraints.min_sharpe``),
    with its schema (the bounds of an ``anyOf`` field are on the field itself)."""
    found: dict[str, dict[str, Any]] = {}
    for name, prop in REQUEST["properties"].items():
        prop = _resolve(prop)
        if prop.get("type") == "object":
            for inner, sub in prop["properties"].items():
                found[f"{name}.{inner}"] = sub
        else:
            found[name] = prop
    return found


def _bounds(schema: dict[str, Any]) -> list[Any]:
    """The bounds the schema states, and the nearest values past them."""
    out: list[Any] = []
    integer = any(b.get("type") == "integer" for b in _branches(schema))
    step = 1 if integer else 1e-9
    for key, sign in (("minimum", -1), ("maximum", 1), ("exclusiveMinimum", 0), ("exclusiveMaximum", 0)):
        for b in (schema, *_branches(schema)):
            if key in b:
                out += [b[key], b[key] + sign * step] if sign else [b[key]]
    for key, sign in (("formatMinimum", -1), ("formatMaximum", 1)):
        if key in schema:
            bound = dt.date.fromisoformat(schema[key])
            out += [bound.isoformat(), (bound + dt.timedelta(days=sign)).isoformat()]
    return out


def edges(schema: dict[str, Any]) -> list[Any]:
    """The edge values of one field: its bounds, the values past them, and what its JSON
    type is worst at; ``None`` too (null where the field is not nullable)."""
    kinds = {b.get("type") for b in _branches(schema)}
    formats = {b.get("format") for b in _branches(schema)}
    values: list[Any] = [*_bounds(schema), None]
    values += [v for b in _branches(schema) for v in b.get("enum", [])] + (["NOPE"] if "enum" in schema else [])
    if "date" in formats:
        values += DATE_EDGES
    elif "string" in kinds:
        values += TEXT_EDGES
    if "number" in kinds:
        values += NUMBER_EDGES
    if "integer" in kinds:
        values += INTEGER_EDGES
    return values


Period = tuple[dt.date, dt.date] | None


def valid(path: str, schema: dict[str, Any], *, period: Period = None) -> st.SearchStrategy[Any]:
    """Values the schema allows (dates inside ``period`` when given: a period the data
    covers, and a short one, is a saga that runs every step, quickly)."""
    branch = _branches(schema)[0]
    if "enum" in branch:
        return st.sampled_from(branch["enum"])
    if path == "dataset":
        return st.sampled_from(schema.get("examples") or BUILTIN_DATASETS)
    if branch.get("format") == "date":
        low = dt.date.fromisoformat(schema.get("formatMinimum", "1900-01-01"))
        high = dt.date.fromisoformat(schema.get("formatMaximum", "2100-12-31"))
        low, high = period or (low, high)
        return st.dates(low, high).map(dt.date.isoformat)
    bounded = {**branch, **{k: v for k, v in schema.items() if k in ("minimum", "maximum", "exclusiveMinimum")}}
    if branch.get("type") == "integer":
        return st.integers(bounded.get("minimum", -(2**31)), bounded.get("maximum", 2**31))
    if branch.get("type") == "number":
        low, high = bounded.get("minimum", bounded.get("exclusiveMinimum", -1e6)), bounded.get("maximum", 1e6)
        return st.floats(low, high, allow_nan=False, exclude_min="exclusiveMinimum" in bounded)
    return st.text(max_size=20)


def field(path: str, schema: dict[str, Any], *, period: Period = None) -> st.SearchStrategy[Any]:
    """A valid value most of the time, an edge value otherwise."""
    return st.one_of(
        valid(path, schema, period=period), valid(path, schema, period=period), st.sampled_from(edges(schema))
    )


def requests(*, period: Period = None) -> st.SearchStrategy[dict[str, Any]]:
    """A request with a dataset (usually a built-in one) and any other fields, each valid
    or at an edge; now and then a ``data_path`` too."""
    fields = leaf_fields()
    optional = {path: field(path, schema, period=period) for path, schema in fields.items() if path != "dataset"}
    return st.fixed_dictionaries({"dataset": field("dataset", fields["dataset"])}, optional=optional).map(nest)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"constraints.min_sharpe": 1}`` as ``{"constraints": {"min_sharpe": 1}}``."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        head, _, tail = path.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[head] = value
    return out


def wire_accepts(request_json: str) -> bool:
    """Whether the orchestrator would take this request off its command stream."""
    fields = {"message_id": "m-1", "type": "orchestrator.StartResearch", "body": f'{{"request": {request_json}}}'}
    try:
        decode(fields)
    except MalformedMessage:
        return False
    return True


def as_json(request: Any) -> str:
    """As a producer outside Python may write it: Infinity and NaN as JS literals, a lone
    surrogate as its escape."""
    return json.dumps(request, allow_nan=True)


async def explore(
    strategy: st.SearchStrategy[Any], check: Callable[[Any], Awaitable[None]], *, max_examples: int
) -> int:
    """Run ``check`` on up to ``max_examples`` values of ``strategy`` (Hypothesis, with its
    shrinking) and return how many it tried. Hypothesis drives from a thread of its own, and
    each check runs on the caller's event loop, where the test's app and clients live."""
    loop = asyncio.get_running_loop()
    tried = 0

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        nonlocal tried
        tried += 1
        asyncio.run_coroutine_threadsafe(check(value), loop).result()

    await asyncio.to_thread(run)
    return tried
