# Types of the agent's C loops (_speedups.c); see Encoder._block, pack_datagrams, frames.
def block(
    buf: bytes,
    pos: int,
    stop: int,
    sizes: bytes,
    plan: bytes,
    prefix: bytes,
    limit: int,
    /,
) -> tuple[int, int, list[bytes], list[tuple[int, int, bytes]], int | None] | None: ...
def pack(
    pending: list[bytes], size: int, bodies: list[bytes], room: int, /
) -> tuple[list[bytes], list[bytes], int]: ...
def frames(bodies: list[bytes], /) -> bytes: ...
