# Types of the C record loop (_speedups.c); see Decoder._records.
from typing import Any

def records(
    buf: bytes | bytearray,
    pos: int,
    table: list[Any],
    block_end: int,
    block_cap: int | None,
    events: list[Any],
    event_type: type[tuple[Any, ...]],
    unknown_name: str,
    /,
) -> tuple[int, int, int | None, int, int, int, int]: ...
