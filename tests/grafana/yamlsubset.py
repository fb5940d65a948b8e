"""A strict loader for the YAML that grafana/provisioning is written in.

The test environment has no YAML library (the project's dependencies do not
include one), so the provisioning files keep to a small subset of YAML and
this module reads exactly that subset, refusing anything else with the line
number: block mappings and sequences (two-space indentation), plain, single-
and double-quoted scalars (ints, floats, true/false, null typed as YAML 1.1
does), flow sequences and flow mappings of scalars on one line, folded block
scalars (``>-``), ``&anchor`` / ``*alias`` on scalars, and ``#`` comments.
A file outside the subset fails the tests, so Grafana's parser (yaml.v2 /
yaml.v3) and this one agree on every file that passes.
"""

from __future__ import annotations

import json
import re

__all__ = ["YamlSubsetError", "load"]


class YamlSubsetError(ValueError):
    pass


_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*|\"[^\"]*\")\s*:(?:\s+(.*))?$")
_ANCHOR = re.compile(r"^&([A-Za-z0-9_-]+)\s+(.*)$")
_ALIAS = re.compile(r"^\*([A-Za-z0-9_-]+)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")


def _strip_comment(text: str) -> str:
    """``text`` without a trailing `` # comment`` (outside quotes)."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


class _Loader:
    def __init__(self, text: str) -> None:
        self.lines: list[tuple[int, int, str]] = []  # (line number, indent, content)
        for n, raw in enumerate(text.splitlines(), 1):
            if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                raise YamlSubsetError(f"line {n}: tab in indentation")
            body = raw.strip()
            if not body or body.startswith("#"):
                continue
            self.lines.append((n, len(raw) - len(raw.lstrip(" ")), raw.lstrip(" ")))
        self.pos = 0
        self.anchors: dict[str, object] = {}

    def fail(self, n: int, why: str):
        raise YamlSubsetError(f"line {n}: {why}")

    # -- scalars -----------------------------------------------------------------------------
    def scalar(self, n: int, text: str):
        text = _strip_comment(text)
        m = _ANCHOR.match(text)
        if m:
            value = self.scalar(n, m.group(2))
            self.anchors[m.group(1)] = value
            return value
        m = _ALIAS.match(text)
        if m:
            if m.group(1) not in self.anchors:
                self.fail(n, f"unknown alias *{m.group(1)}")
            return self.anchors[m.group(1)]
        if text.startswith("["):
            if not text.endswith("]"):
                self.fail(n, "flow sequence must end on its line")
            inner = text[1:-1].strip()
            return [self.scalar(n, part) for part in _split_flow(inner, n)] if inner else []
        if text.startswith("{"):
            if not text.endswith("}"):
                self.fail(n, "flow mapping must end on its line")
            out = {}
            inner = text[1:-1].strip()
            for part in _split_flow(inner, n) if inner else []:
                m = _KEY.match(part)
                if not m or m.group(2) is None:
                    self.fail(n, f"bad flow mapping entry {part!r}")
                out[_key(m.group(1))] = self.scalar(n, m.group(2))
            return out
        if text.startswith('"'):
            if not text.endswith('"') or len(text) < 2:
                self.fail(n, "unterminated double-quoted scalar")
            return json.loads(text)
        if text.startswith("'"):
            if not text.endswith("'") or len(text) < 2:
                self.fail(n, "unterminated single-quoted scalar")
            return text[1:-1].replace("''", "'")
        if text[:1] in "|>!%@`&*":
            self.fail(n, f"unsupported YAML here: {text!r}")
        if text in ("true", "True", "TRUE"):
            return True
        if text in ("false", "False", "FALSE"):
            return False
        if text in ("null", "Null", "NULL", "~", ""):
            return None
        if _INT.match(text):
            return int(text)
        if _FLOAT.match(text):
            return float(text)
        if ": " in text or text.endswith(":") or " #" in text:
            self.fail(n, f"ambiguous plain scalar {text!r}")
        return text

    def folded(self, indent: int) -> str:
        """A ``>-`` block: lines more indented than ``indent``, folded with spaces."""
        parts = []
        while self.pos < len(self.lines) and self.lines[self.pos][1] > indent:
            parts.append(self.lines[self.pos][2].rstrip())
            self.pos += 1
        if not parts:
            self.fail(self.lines[self.pos - 1][0], "empty folded block")
        return " ".join(parts)

    # -- blocks ---------------------------------------------------------------------------------
    def block(self, indent: int):
        n, ind, text = self.lines[self.pos]
        if ind != indent:
            self.fail(n, f"indentation {ind}, expected {indent}")
        if text.startswith("- ") or text == "-":
            return self.sequence(indent)
        return self.mapping(indent)

    def value_after(self, n: int, rest: str | None, indent: int):
        """The value of a key or item whose text after the indicator is ``rest``."""
        if rest is None or rest == "":
            if self.pos < len(self.lines) and self.lines[self.pos][1] > indent:
                return self.block(self.lines[self.pos][1])
            if self.pos < len(self.lines) and self.lines[self.pos][1] == indent \
                    and self.lines[self.pos][2].startswith("- "):
                return self.sequence(indent)  # a sequence may sit at its key's indentation
            return None
        rest_clean = _strip_comment(rest)
        if rest_clean == ">-":
            return self.folded(indent)
        m = _ANCHOR.match(rest_clean)
        if m and m.group(2) == "":
            self.fail(n, "anchors on collections are not in the subset")
        return self.scalar(n, rest)

    def mapping(self, indent: int) -> dict:
        out: dict = {}
        while self.pos < len(self.lines):
            n, ind, text = self.lines[self.pos]
            if ind < indent:
                break
            if ind > indent:
                self.fail(n, f"unexpected indentation {ind} (mapping at {indent})")
            if text.startswith("- "):
                break
            m = _KEY.match(_strip_comment(text))
            if not m:
                self.fail(n, f"expected 'key: value', got {text!r}")
            key = _key(m.group(1))
            if key in out:
                self.fail(n, f"duplicate key {key!r}")
            self.pos += 1
            out[key] = self.value_after(n, m.group(2), indent)
        return out

    def sequence(self, indent: int) -> list:
        out: list = []
        while self.pos < len(self.lines):
            n, ind, text = self.lines[self.pos]
            if ind < indent or not (text.startswith("- ") or text == "-"):
                break
            if ind > indent:
                self.fail(n, f"unexpected indentation {ind} (sequence at {indent})")
            rest = text[2:] if text.startswith("- ") else ""
            item_indent = indent + 2
            if rest and _KEY.match(_strip_comment(rest)) and not rest.startswith(("{", "[", '"', "'")):
                # "- key: value" opens a mapping whose keys sit at indent + 2
                self.lines[self.pos] = (n, item_indent, rest)
                out.append(self.mapping(item_indent))
            else:
                self.pos += 1
                out.append(self.value_after(n, rest, indent))
        return out


def _key(text: str) -> str:
    return json.loads(text) if text.startswith('"') else text


def _split_flow(inner: str, n: int) -> list[str]:
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(inner):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    if quote or depth:
        raise YamlSubsetError(f"line {n}: unbalanced flow collection")
    return parts


def load(text: str):
    """The document in ``text`` (one document, a mapping at the top)."""
    loader = _Loader(text)
    if not loader.lines:
        raise YamlSubsetError("empty document")
    if loader.lines[0][2].startswith("---"):
        raise YamlSubsetError("line 1: document markers are not in the subset")
    doc = loader.block(0)
    if loader.pos != len(loader.lines):
        n = loader.lines[loader.pos][0]
        raise YamlSubsetError(f"line {n}: content after the document")
    return doc
