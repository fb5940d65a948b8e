"""The API's own files (token store, its key, connections): private and
written so that nobody else can read, swap or redirect them.

``write_private`` makes the directory (0700) if needed, writes a fresh temporary file
next to the target, created exclusively (``O_EXCL``) and without following
a link (``O_NOFOLLOW``), mode 0600, synced, then renamed over the target.
A planted link or file at the temporary name cannot receive the secrets: a
new random name is tried instead.  ``read_private`` refuses to follow a link.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger("liveprof.api")
_warned: set[Path] = set()
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def private_dir(path: Path) -> None:
    """``path`` exists; made 0700 when created here.  An existing directory
    is left as it is (it may be shared, like /tmp), with a warning when
    others may enter it."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
    elif path.stat().st_mode & 0o077 and path not in _warned:
        _warned.add(path)
        log.warning("%s is open to other users (mode %o): the API's files in it are 0600, "
                    "but make it 0700", path, path.stat().st_mode & 0o777)


def write_private(path: Path, data: bytes) -> None:
    path = Path(path)
    private_dir(path.parent)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, _FLAGS, 0o600)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(f"no free temporary name next to {path}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes:
    """The file's bytes; ``FileNotFoundError`` when missing; ``OSError``
    (ELOOP) when it is a link."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, f"{path} is a symbolic link; the API reads only a "
                                     f"plain file there") from None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()
