"""Shared bits of the sink tests."""

from __future__ import annotations

import asyncio
import time

BASE_NS = 1_700_000_000_000_000_000


def seq_lines(n: int, *, start: int = 0, measurement: str = "seqtest", run: str = "r") -> list[str]:
    """Line protocol points numbered by a ``seq`` field, one ns apart."""
    return [f"{measurement},run={run} seq={i}i,pad=\"x\" {BASE_NS + i}" for i in range(start, start + n)]


def stored_seqs(server, database: str, measurement: str = "seqtest") -> list[int]:
    """Every ``seq`` value stored, in time order."""
    series = server.series(f'SELECT "seq" FROM "{measurement}"', database)
    return [row[1] for s in series for row in s["values"]]


def seq_of(line: str) -> int:
    return int(line.split(" seq=")[1].split("i", 1)[0])


async def eventually(predicate, *, within: float = 20.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true; fail after ``within`` seconds (a
    deadline for something that must happen, not a speed requirement)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {within} s")
        await asyncio.sleep(0.02)
