"""What every contract model shares about its values: text that PostgreSQL can store, and
numbers that JSON can carry.

A NUL character cannot be stored in PostgreSQL's ``text`` or ``jsonb``, and a lone
surrogate (U+D800-U+DFFF) cannot be encoded as UTF-8 at all: either would pass a plain
``str`` field and then fail wherever it is stored. Infinity and NaN are not JSON: pydantic
would write them as ``null``, which the reader then refuses, so a model that accepted one
would send what its own contract forbids."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import ConfigDict, Field

# Python's re, Rust's regex (pydantic-core) and ECMA-262 (JSON Schema) all read \u0000.
# A pattern also makes pydantic-core refuse a lone surrogate (it reads the text as UTF-8).
STORABLE_PATTERN = r"^[^\u0000]*$"
Text = Annotated[str, Field(pattern=STORABLE_PATTERN)]
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The model configuration every contract model shares: Infinity and NaN are refused.
STRICT = ConfigDict(allow_inf_nan=False)


def storable(text: str) -> bool:
    """Whether PostgreSQL can store ``text`` (as ``text`` or inside ``jsonb``)."""
    return UNSTORABLE.search(text) is None
