"""How the one-shot commands end: one exit status rule for ``dump``,
``derive``, ``import``, ``upload`` and ``monitor``.

- ``0`` OK: every input was read whole and was a complete eventlog (and,
  for ``import``/``upload``, was stored).
- ``1`` BAD_DATA: an input is malformed, cut short (no end marker: a killed
  program, a copy made while it was still written) or empty, or the server
  refused some of it as bad.  Everything before the fault was still printed,
  imported or uploaded.
- ``2`` USAGE: the command could not do its work: a bad flag or setting, a
  path that is missing, unreadable or a directory, a server that cannot be
  reached, does not answer within the timeout, or refuses the credentials.

With several inputs the highest status wins; ``130`` after Ctrl-C.  Every
failure is one line on standard error naming the path, flag or server,
never a traceback (how a log ended: ``session.SessionEnd.describe``).
"""

from __future__ import annotations

import os
import stat

from ..errors import LiveprofError

OK, BAD_DATA, USAGE = 0, 1, 2


class InputError(LiveprofError):
    """An input path the command cannot read (exit ``USAGE``)."""


def check_input(path: str) -> int:
    """The ``st_mode`` of the input ``path`` (0 for ``-``, standard input)
    once it is known to be readable and not a directory; ``InputError``
    names the path and the reason otherwise."""
    if path == "-":
        return 0
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{path}: is a directory, not an eventlog file")
        if stat.S_ISREG(mode):
            os.close(os.open(path, os.O_RDONLY))
        elif not os.access(path, os.R_OK):
            # not opened: a writer waiting on a named pipe would take the
            # open for its reader, and lose its data when it closes
            raise InputError(f"{path}: Permission denied")
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    return mode
