"""Private files for the service's state: spool segments and cursor, the API's
token store, its key and the connections store.

State holds what the monitored programs said and secrets (token hashes, the
HMAC key): files are 0600 whatever the umask, directories made here 0700, and
nothing is opened through a symbolic link (``O_NOFOLLOW``), so nobody can point
the service's reads or writes at another file.  ``write_private`` replaces a
file whole through a temporary file with a fresh random name, created
exclusively (``O_EXCL``): a link or file planted at a temporary name cannot
receive the data (another name is tried), and a crash leaves the old content
or the new, never a mix.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from pathlib import Path

__all__ = ["private_dir", "open_private", "write_private", "read_private",
           "FILE_MODE", "DIR_MODE"]

log = logging.getLogger("liveprof.files")

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_warned: set[Path] = set()


def private_dir(path: str | os.PathLike, *, tighten: bool) -> Path:
    """Create ``path`` and its missing parents with mode 0700; returns it.

    What happens to a directory that already exists is the caller's choice:

    - ``tighten=True``: it is made 0700, and a symbolic link is refused
      (``NotADirectoryError``: chmod would change the link's target).  For a
      directory that belongs to the service alone, like the spool's, where
      nobody else has business and an older version may have left it open.
    - ``tighten=False``: it is left as it is, with a warning (once) when
      others may enter it.  For the directory of a path a user configures,
      like the token store's, which may be shared (``/tmp``, ``/etc/...``):
      changing its mode would break others; the files in it are 0600 anyway.
    """
    path = Path(path)
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, DIR_MODE)
        except FileExistsError:
            pass
        else:
            os.chmod(p, DIR_MODE)  # mkdir's mode is cut by the umask
    if tighten:
        if path.is_symlink() or not path.is_dir():
            raise NotADirectoryError(f"{path} is not a directory (or is a symbolic link)")
        if path.stat().st_mode & 0o777 != DIR_MODE:
            os.chmod(path, DIR_MODE)
        return path
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    if path.stat().st_mode & 0o077 and path not in _warned:
        _warned.add(path)
        log.warning("%s is open to other users (mode %o): the service's files in it are "
                    "0600, but make it 0700", path, path.stat().st_mode & 0o777)
    return path


def open_private(path: str | os.PathLike, flags: int, *, exclusive: bool = False) -> int:
    """``os.open`` for a state file: mode 0600, never through a symbolic link;
    ``exclusive`` adds ``O_CREAT | O_EXCL`` (the file must not exist).  A file
    opened for writing that an older version made wider is made 0600."""
    flags |= _NOFOLLOW | _CLOEXEC
    if exclusive:
        flags |= os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, FILE_MODE)
    if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) and os.fstat(fd).st_mode & 0o777 != FILE_MODE:
        os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: str | os.PathLike, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data``: a 0600 temporary file with a random
    name beside it, created exclusively, written, fsynced (unless ``sync`` is
    false: the spool's cursor, where a lost update only replays a batch), then
    renamed over ``path``.  The directory must exist (``private_dir``)."""
    path = Path(path)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = open_private(tmp, os.O_WRONLY, exclusive=True)
        except FileExistsError:
            continue  # taken (planted?): another name
        break
    else:
        raise FileExistsError(f"no free temporary name next to {path}")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private(path: str | os.PathLike) -> bytes:
    """The file's bytes; ``FileNotFoundError`` when missing; ``OSError``
    (ELOOP) naming the path when it is a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, f"{path} is a symbolic link; the service reads only a "
                                     f"plain file there") from None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()
