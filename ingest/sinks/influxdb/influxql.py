"""InfluxQL quoting: the one place identifiers and string literals are quoted.

InfluxQL (1.x) reads a double-quoted identifier and a single-quoted string
with backslash escapes for the quote and the backslash itself; anything else
goes in as it is.  Every statement liveprof builds (the sink, the rollup
scheme, setup) quotes through these, so a name holding a quote cannot end the
literal early.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["quote_ident", "quote_string", "tags_match"]


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def tags_match(tags: Mapping[str, str]) -> str:
    """``"k" = 'v' AND ...``: a condition every given tag must meet (in key
    order); ``ValueError`` for no tags (a condition on nothing matches all)."""
    if not tags:
        raise ValueError("no tags: a condition on nothing would match every series")
    return " AND ".join(f"{quote_ident(k)} = {quote_string(v)}" for k, v in sorted(tags.items()))
