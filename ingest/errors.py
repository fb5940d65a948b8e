"""One root for liveprof's own errors; ``protocol`` keeps its ``DecodeError``.

Sources tell two kinds of fault apart, so that the service retries only what
can heal: a ``SourceError`` is transient (a peer not there yet, a lost
connection, too many open files) and the source is restarted after a delay;
a ``PermanentSourceError`` cannot heal by waiting (a path of the wrong type,
no permission, a directory that does not exist) and stops that source with
one log line, or makes ``serve`` refuse to start when it is seen at start.
"""

from __future__ import annotations

import errno


class LiveprofError(Exception):
    """Root of the errors liveprof raises itself."""


class SourceError(LiveprofError):
    """A source could not deliver bytes (cannot open, lost connection, ...);
    trying again later may work."""


class PermanentSourceError(SourceError):
    """A source cannot work as configured; trying again cannot help."""


class ConfigError(LiveprofError):
    """The configuration is invalid."""


# errors of a path that waiting will not mend (ENOENT is the caller's call: a
# FIFO's program or a followed file may create the path later)
PERMANENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                              errno.ENAMETOOLONG, errno.ELOOP, errno.EROFS, errno.EBADF,
                              errno.EINVAL, errno.ENOTSOCK, errno.EADDRNOTAVAIL})


def source_fault(what: str, exc: OSError, *, missing_is_permanent: bool = False) -> SourceError:
    """The error a source raises for ``exc`` met on ``what`` (e.g. ``"fifo
    /run/x: cannot open"``): permanent or transient by its errno."""
    permanent = exc.errno in PERMANENT_ERRNOS or (
        missing_is_permanent and exc.errno == errno.ENOENT)
    cls = PermanentSourceError if permanent else SourceError
    return cls(f"{what}: {exc.strerror or exc}")
