"""Python source as HTML with its tokens in classes the stylesheet colours: keywords,
names of builtins, strings, numbers, comments. Built on the standard tokenizer, so nothing
is guessed; text that does not tokenize is shown plain. Pure."""

from __future__ import annotations

import builtins
import io
import keyword
import tokenize
from html import escape

_BUILTINS = frozenset(dir(builtins))


def _css_class(tok: tokenize.TokenInfo) -> str | None:
    if tok.type == tokenize.COMMENT:
        return "tok-comment"
    if tok.type == tokenize.STRING or tok.type in _FSTRING:
        return "tok-string"
    if tok.type == tokenize.NUMBER:
        return "tok-number"
    if tok.type == tokenize.NAME:
        if keyword.iskeyword(tok.string) or keyword.issoftkeyword(tok.string):
            return "tok-keyword"
        if tok.string in _BUILTINS:
            return "tok-builtin"
    return None


_FSTRING = frozenset(
    getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)
)


def python_html(source: str) -> str:
    """``source`` escaped for HTML, its tokens wrapped in ``<span class="tok-…">``."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return escape(source)
    out, position = [], 0
    for tok in tokens:
        css = _css_class(tok)
        if css is None:
            continue
        start = offsets[tok.start[0] - 1] + tok.start[1]
        end = offsets[tok.end[0] - 1] + tok.end[1]
        if start < position:
            continue  # inside a token already wrapped (an f-string's parts)
        out.append(escape(source[position:start]))
        out.append(f'<span class="{css}">{escape(source[start:end])}</span>')
        position = end
    out.append(escape(source[position:]))
    return "".join(out)
