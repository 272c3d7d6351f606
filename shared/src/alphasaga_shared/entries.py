"""A stream entry's fields as text, apart from the message codec (``wire``): a reader of
plain fields (the held-message board, dead letters) needs no message models."""

from __future__ import annotations


def as_text(raw: dict[bytes, bytes] | dict[str, str]) -> dict[str, str]:
    """Entry fields as text; undecodable bytes become U+FFFD so the error can be shown."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        v = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        out[k] = v
    return out
