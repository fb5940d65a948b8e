"""The stable-naming rule (docs/schema.md, "Label names"), recomputed from
the per-window values of every label (a run with every label named), to check
what a deriver with a bound names and folds."""

from __future__ import annotations

import collections


def per_window(points, fields) -> dict[int, dict[str, tuple]]:
    out: dict = collections.defaultdict(dict)
    for p in points:
        if "label" in p.tags:
            assert p.tags["label"] not in out[p.time]
            out[p.time][p.tags["label"]] = tuple(p.fields[f] for f in fields)
    return out


def expected(full: dict[int, dict[str, tuple]], top: int, max_labels: int,
             other: str = "other") -> tuple[dict[int, dict[str, tuple]], set, int]:
    """Window by window in time order: a label is named the first time it ranks
    among the window's ``top`` by its first value (ties by name) while fewer
    than ``max_labels`` are named; the rest is summed under ``other``.  Also
    the named labels and how many entries (label, window) were folded."""
    named: set = set()
    out = {}
    folded = 0
    for t in sorted(full):
        labels = full[t]
        ranked = sorted(labels, key=lambda k: (-labels[k][0], k))
        for label in ranked[:top]:
            if label not in named and label != other and len(named) < max_labels:
                named.add(label)
        kept = {k: v for k, v in labels.items() if k in named}
        rest = [v for k, v in labels.items() if k not in named]
        if rest:
            kept[other] = tuple(map(sum, zip(*rest)))
            folded += len(rest)
        out[t] = kept
    return out, named, folded
