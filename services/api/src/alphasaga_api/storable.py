"""Text PostgreSQL cannot store (a NUL, a lone surrogate), refused once for every route:
each path and query parameter and every string in a JSON body, keys included, before any
route runs. Refused as a 422 problem naming each field, the way a model's own errors are,
and never echoing the input."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from alphasaga_contracts.text import UNSTORABLE, storable

Loc = tuple[str | int, ...]
MESSAGE = "holds a character that cannot be stored (NUL, or a lone UTF-16 surrogate)"


def _walk(loc: Loc, value: Any) -> Iterator[Loc]:
    """Where unstorable text sits in a parsed JSON value."""
    if isinstance(value, str):
        if not storable(value):
            yield loc
    elif isinstance(value, dict):
        for key, inner in value.items():
            if not storable(key):
                yield (*loc, UNSTORABLE.sub("\ufffd", key))  # the key named, its bad character not repeated
            else:
                yield from _walk((*loc, key), inner)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _walk((*loc, index), inner)


def _parameters(kind: str, items: Iterable[tuple[str, str]]) -> Iterator[Loc]:
    for name, value in items:
        yield from _walk((kind,), {name: value})


async def _body(request: Request) -> Any:
    if "json" not in request.headers.get("content-type", "") or not await request.body():
        return None
    try:
        return await request.json()
    except ValueError:
        return None  # malformed: the route's body parsing answers 400


async def storable_input(request: Request) -> None:
    """The app-wide dependency: raises the 422 before the route's own parameters are read."""
    found = [
        *_parameters("path", request.path_params.items()),
        *_parameters("query", request.query_params.multi_items()),
        *_walk(("body",), await _body(request)),
    ]
    if found:
        raise RequestValidationError([{"loc": loc, "msg": MESSAGE, "type": "string_unstorable"} for loc in found])
