"""Private files for the service's state (spool segments, cursors, stores).

State can hold what the monitored programs said and, elsewhere, secrets: its
directories are made 0700 and its files 0600 whatever the umask, and files are
opened without following a symbolic link (``O_NOFOLLOW``), temporary ones
created exclusively (``O_EXCL``), so nobody can point the service's writes at
another file.  ``write_atomic`` replaces a file whole (temp file, fsync,
rename), so a crash leaves the old or the new content, never a mix.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["private_dir", "open_private", "write_atomic", "FILE_MODE", "DIR_MODE"]

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing
    ``path`` is set to 0700 (its parents are left as they are)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, DIR_MODE)
        except FileExistsError:
            pass
    if path.is_symlink() or not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory (or is a symbolic link)")
    if path.stat().st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: str | os.PathLike, flags: int, *, exclusive: bool = False) -> int:
    """``os.open`` for a state file: mode 0600, never through a symbolic link;
    ``exclusive`` adds ``O_CREAT | O_EXCL`` (the file must not exist)."""
    flags |= _NOFOLLOW | _CLOEXEC
    if exclusive:
        flags |= os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, FILE_MODE)
    if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) and os.fstat(fd).st_mode & 0o777 != FILE_MODE:
        os.fchmod(fd, FILE_MODE)  # an older file, created with wider permissions
    return fd


def write_atomic(path: str | os.PathLike, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data``: a 0600 temp file beside it, created
    exclusively (a stale one from a crash is removed first), then renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # removes a link itself, never its target
    fd = open_private(tmp, os.O_WRONLY, exclusive=True)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
